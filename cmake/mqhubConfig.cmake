# mqhubConfig.cmake: find_package(mqhub) for an installed mqhub.
#   mqhub::client  libmqhub, the shared C client library (docs/client.md)
#   mqhub::api     the public headers (<mqhub/client.h>, <mqhub/plugin.h>) and libuv
#   mqhub::headers the public headers alone
# Their dependencies (msgpack-c, libuv) are found with pkg-config, as mqhub's
# own build finds them. Installed as is by cmake/packaging.cmake.
include(CMakeFindDependencyMacro)
find_dependency(PkgConfig)
if(NOT TARGET PkgConfig::MSGPACK)
  pkg_check_modules(MSGPACK QUIET IMPORTED_TARGET msgpack)
endif()
if(NOT TARGET PkgConfig::UV)
  pkg_check_modules(UV QUIET IMPORTED_TARGET libuv)
endif()
if(NOT TARGET PkgConfig::MSGPACK OR NOT TARGET PkgConfig::UV)
  set(mqhub_FOUND FALSE)
  set(mqhub_NOT_FOUND_MESSAGE "mqhub needs msgpack-c and libuv (pkg-config msgpack libuv)")
  return()
endif()
include(${CMAKE_CURRENT_LIST_DIR}/mqhubTargets.cmake)
