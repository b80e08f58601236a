# Tests of core/replica.c and core/config.c, included by tests/unit/CMakeLists.txt.
# The replica tests run real raft on loopback ports (17000 + pid % 1000 + n)
# with the real fsm, each in its own temp dir.
add_executable(config_test ${CMAKE_CURRENT_LIST_DIR}/config_test.c)
target_link_libraries(config_test PRIVATE mqhub_node PkgConfig::CMOCKA)
add_test(NAME config COMMAND config_test)
set_tests_properties(config PROPERTIES TIMEOUT 30 LABELS unit)

add_library(replica_testutil STATIC ${CMAKE_CURRENT_LIST_DIR}/replica_util.c)
target_include_directories(replica_testutil PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(replica_testutil PUBLIC mqhub_replica PkgConfig::CMOCKA)

add_executable(replica_test ${CMAKE_CURRENT_LIST_DIR}/replica_test.c)
target_link_libraries(replica_test PRIVATE replica_testutil)
add_test(NAME replica COMMAND replica_test)
set_tests_properties(replica PROPERTIES TIMEOUT 120 LABELS unit)

add_executable(replica_crash_test ${CMAKE_CURRENT_LIST_DIR}/replica_crash_test.c)
target_link_libraries(replica_crash_test PRIVATE replica_testutil)
add_test(NAME replica_crash COMMAND replica_crash_test)
set_tests_properties(replica_crash PROPERTIES TIMEOUT 120 LABELS unit)
