# Install rules for what is not installed where it is defined, and the .deb
# (docs/operations.md "Install"): the public headers, the pkg-config files,
# the CMake package (find_package(mqhub)), the systemd unit and default
# configuration, then CPack. Programs and libmqhub install themselves in
# apps/ and client/, plugins in mqhub_add_plugin (cmake/mqhub.cmake), the
# dashboard in transports/websocket/. The templates and maintainer scripts
# are in packaging/.
#
# The programs, plugins, .pc and CMake files carry no absolute install path:
# mqhubd and websocket.so find the plugins and the dashboard relative to
# themselves, the .pc files find the prefix from their own folder, so an
# install tree works under any prefix. Only the unit names absolute paths.
# `make package` configures build-deb/ for the system layout (prefix /usr,
# sysconfdir /etc): the multiarch libdir, /etc/mqhub and the unit's paths.
include(CMakePackageConfigHelpers)

# Public headers; mqhub/version.h is generated (cmake/mqhub_version.cmake).
install(DIRECTORY include/mqhub DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        PATTERN "*.in" EXCLUDE)

# pkg-config: mqhub.pc (the client library), mqhub-plugin.pc (plugin authors,
# with the plugin folder as the variable plugindir).
file(RELATIVE_PATH MQHUB_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
     ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" MQHUB_PC_TO_PREFIX ${MQHUB_PC_TO_PREFIX})
foreach(pc mqhub mqhub-plugin)
  configure_file(packaging/${pc}.pc.in ${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

# find_package(mqhub): mqhub::client (the shared libmqhub; the static
# mqhub_client needs mqhub_util and is for this build only), mqhub::api (the
# public headers and libuv) and mqhub::headers (the headers alone).
set(MQHUB_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mqhub)
set_target_properties(mqhub_client_shared PROPERTIES EXPORT_NAME client)
set_target_properties(mqhub_api PROPERTIES EXPORT_NAME api)
set_target_properties(mqhub_headers PROPERTIES EXPORT_NAME headers)
install(TARGETS mqhub_client_shared mqhub_api mqhub_headers EXPORT mqhub-targets)
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
# Depends: what dpkg-shlibdeps finds in the binaries, plus three it cannot
# see: libwebsockets loads its libuv event library at run time, postinst
# runs adduser, and the webhook plugin needs libcurl 7.85 or later
# (CURLOPT_PROTOCOLS_STR; it refuses to start with an older one) where
# dpkg-shlibdeps only asks for the oldest libcurl4 with the symbols it links.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libwebsockets-evlib-uv, adduser, libcurl4 (>= 7.85)")
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
