"""cmqpki.py: a throwaway PKI for the CMQ TLS tests, made with the openssl
command in a temp dir (the shell version of tests/integration/tls_pki.c):
ca.pem/ca.key, server.pem/server.key for the subjectAltNames given, and
client.pem/client.key (extendedKeyUsage clientAuth). P-256 keys, 2 days."""
import subprocess

KEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"


def make_pki(d, san=("IP:127.0.0.1", "DNS:localhost")):
    cn = san[0].split(":", 1)[1]
    script = (
        "openssl req -x509 {k} -days 2 -subj /CN=mqhub-cmq-test-CA -keyout ca.key -out ca.pem\n"
        "openssl req {k} -subj /CN={cn} -keyout server.key -out server.csr\n"
        "printf 'subjectAltName={san}\\n' > server.ext\n"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile server.ext -out server.pem\n"
        "openssl req {k} -subj /CN=client -keyout client.key -out client.csr\n"
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n"
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile client.ext -out client.pem\n").format(k=KEY, cn=cn, san=",".join(san))
    subprocess.run(["sh", "-e", "-c", script], cwd=d, check=True, capture_output=True, timeout=60)
