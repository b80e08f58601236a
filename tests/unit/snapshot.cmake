# Tests of core/snapshot.c and the store's frozen mode, included by
# tests/unit/CMakeLists.txt: no raft, no network (a fake raft_io).
mqhub_fsm_unit_test(snapshot_test ${CMAKE_CURRENT_LIST_DIR}/snapshot_test.c)
