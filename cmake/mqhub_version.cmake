# The generated public header mqhub/version.h: MQHUB_VERSION_MAJOR/MINOR/PATCH
# and MQHUB_VERSION_STRING from project(VERSION). It is written to the build
# tree's include folder, MQHUB_GENERATED_INCLUDE_DIR (on mqhub_api's include
# path next to include/), and installed with the other public headers.
set(MQHUB_GENERATED_INCLUDE_DIR ${CMAKE_BINARY_DIR}/include)
configure_file(${CMAKE_SOURCE_DIR}/include/mqhub/version.h.in
  ${MQHUB_GENERATED_INCLUDE_DIR}/mqhub/version.h @ONLY)
install(FILES ${MQHUB_GENERATED_INCLUDE_DIR}/mqhub/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mqhub)
