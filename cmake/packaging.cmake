# Install rules for what is not a target, and the .deb (docs/operations.md
# "Install"): the pkg-config files, the CMake package (find_package(mqhub)),
# the systemd unit and default configuration, then CPack. Targets install
# themselves where they are defined (apps/, client/, mqhub_add_plugin in
# cmake/mqhub.cmake, the dashboard in transports/websocket/). The templates
# and maintainer scripts are in packaging/.
#
# mqhubd and websocket.so carry their install paths compiled in, so the .deb
# comes from a tree configured for the system layout (CMAKE_INSTALL_PREFIX
# /usr, CMAKE_INSTALL_SYSCONFDIR /etc): `make package` configures build-deb/
# so. CPack installs that tree with DESTDIR: the package holds exactly the
# paths the binaries were built for.
include(CMakePackageConfigHelpers)

# pkg-config: mqhub.pc (the client library), mqhub-plugin.pc (plugin authors,
# with the plugin folder as the variable plugindir).
file(RELATIVE_PATH MQHUB_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" MQHUB_PC_TO_PREFIX ${MQHUB_PC_TO_PREFIX})
foreach(pc mqhub mqhub-plugin)
  configure_file(packaging/${pc}.pc.in ${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

# find_package(mqhub): mqhub::client and mqhub::api (the export set
# mqhub-targets is filled where they are defined).
set(MQHUB_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mqhub)
install(EXPORT mqhub-targets NAMESPACE mqhub:: FILE mqhubTargets.cmake
        DESTINATION ${MQHUB_INSTALL_CMAKEDIR})
write_basic_package_version_file(mqhubConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES cmake/mqhubConfig.cmake ${CMAKE_BINARY_DIR}/mqhubConfigVersion.cmake
        DESTINATION ${MQHUB_INSTALL_CMAKEDIR})

# The service: mqhubd.service (systemd's unit folder under the prefix, which
# systemd searches for /usr and /usr/local) and its configuration.
configure_file(packaging/mqhubd.service.in mqhubd.service @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/mqhubd.service DESTINATION lib/systemd/system)
install(FILES packaging/mqhub.conf DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/mqhub)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

# The .deb: one package, mqhub, with everything above.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mqhub)
set(CPACK_PACKAGE_CONTACT "mqhub maintainers <maintainers@mqhub.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "message hub: durable queues and fan-out topics replicated with Raft")
set(CPACK_PACKAGE_DESCRIPTION
    "mqhub stores messages in Kyoto Cabinet, replicates them with Raft and serves\n"
    "them through transport plugins (TCP + MessagePack, WebSocket with a live\n"
    "dashboard), with Lua filters and hooks. This package holds the daemon\n"
    "mqhubd (the systemd service mqhubd.service), the mqhub CLI, the plugins,\n"
    "the dashboard, and libmqhub with its headers, pkg-config and CMake files.")
string(JOIN "" CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# What dpkg-shlibdeps finds in the binaries (tests/install/package_test.sh
# checks that none is missing), plus two it cannot see: libwebsockets loads
# its libuv event library at run time, and postinst runs adduser.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.34), libjansson4 (>= 2.14), libkyotocabinet16v5 (>= 1.2.79), "
    "liblua5.4-0 (>= 5.4.4), libmsgpackc2 (>= 2.1.0), libraft0 (>= 0.22.0), "
    "libssl3 (>= 3.0.0), libuv1 (>= 1.4.2), libwebsockets17 (>= 3.2.0), "
    "libwebsockets-evlib-uv, adduser")
string(JOIN "" CPACK_DEBIAN_PACKAGE_DEPENDS ${CPACK_DEBIAN_PACKAGE_DEPENDS})
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
file(WRITE ${CMAKE_BINARY_DIR}/packaging/conffiles
     "${CMAKE_INSTALL_FULL_SYSCONFDIR}/mqhub/mqhub.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/packaging/conffiles
    ${CMAKE_SOURCE_DIR}/packaging/postinst ${CMAKE_SOURCE_DIR}/packaging/prerm
    ${CMAKE_SOURCE_DIR}/packaging/postrm ${CMAKE_SOURCE_DIR}/packaging/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
