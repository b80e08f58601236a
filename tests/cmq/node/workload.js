'use strict';
// workload.js: a queue and topic workload through the npm package cmq-sdk
// (a real Node client of Tencent CMQ), run by cmq_node_sdk_test.py with
// --require redirect.js. Usage: node workload.js SECRET_ID SECRET_KEY http|https
// Prints one JSON object of what the hub answered; the Python side checks it.
const { CMQ } = require('cmq-sdk');

const [secretId, secretKey, scheme] = process.argv.slice(2);
const cmq = CMQ.NEW({
  path: '/v2/index.php',
  signatureMethod: 'HmacSHA256',
  extranet: scheme === 'https',
  secretId,
  secretKey,
  region: 'gz',
});

async function call(what, options) {
  const r = await cmq[what](options);
  if (r.code !== 0 && !(what === 'publishMessage' && r.code === 6030)) {
    throw new Error(`${what}: ${JSON.stringify(r)}`);
  }
  return r;
}

async function main() {
  const out = {};
  const q = `node.${scheme}.q`;
  const t = `node.${scheme}.t`;
  const sub = `node.${scheme}.red`;
  out.queueId = (await call('createQueue', { queueName: q, visibilityTimeout: 30 })).queueId;
  out.msgId = (await call('sendMessage', { queueName: q, msgBody: 'hello from node', delaySeconds: 0 })).msgId;
  // arrays go out as msgBody.0, msgBody.1, ... (0-based)
  out.batchSent = (await call('batchSendMessage', { queueName: q, msgBody: ['b1', 'b2', 'b3'] })).msgList.length;
  const got = await call('batchReceiveMessage', { queueName: q, numOfMsg: 16, pollingWaitSeconds: 2 });
  out.received = got.msgInfoList.map((m) => m.msgBody).sort();
  await call('batchDeleteMessage', { queueName: q, receiptHandle: got.msgInfoList.map((m) => m.receiptHandle) });
  const attrs = await call('getQueueAttributes', { queueName: q });
  out.left = attrs.activeMsgNum + attrs.inactiveMsgNum;
  out.listed = (await call('listQueue', { searchWord: `node.${scheme}` })).queueList.map((x) => x.queueName).sort();

  await call('createTopic', { topicName: t, filterType: 1 });
  await call('createQueue', { queueName: sub });
  await call('subscribe', {
    topicName: t, subscriptionName: 'red', protocol: 'queue', endpoint: sub,
    notifyContentFormat: 'SIMPLIFIED', filterTag: ['red'],
  });
  await call('publishMessage', { topicName: t, msgBody: 'a red one', msgTag: ['red', 'round'] });
  out.blue = (await call('publishMessage', { topicName: t, msgBody: 'a blue one', msgTag: ['blue'] })).code;
  await call('batchPublishMessage', { topicName: t, msgBody: ['red 2', 'red 3'], msgTag: ['red'] });
  const fanned = await call('batchReceiveMessage', { queueName: sub, numOfMsg: 16, pollingWaitSeconds: 2 });
  out.fanned = fanned.msgInfoList.map((m) => m.msgBody).sort();
  const one = await call('receiveMessage', { queueName: q, pollingWaitSeconds: 1 }).catch((e) => e.message);
  out.emptyReceive = typeof one === 'string' ? one.replace(/.*"code":(\d+).*/s, '$1') : 'got one';
  out.subscriptions = (await call('listSubscriptionByTopic', { topicName: t })).totalCount;
  await call('unsubscribe', { topicName: t, subscriptionName: 'red' });
  await call('deleteTopic', { topicName: t });
  await call('deleteQueue', { queueName: q });
  await call('deleteQueue', { queueName: sub });
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
