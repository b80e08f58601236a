# Helper functions for mqhub's build, and where things go when installed.

# All plugins land in one folder of the build tree, where mqhubd looks by
# default when it runs from the build tree.
set(MQHUB_PLUGIN_OUT ${CMAKE_BINARY_DIR}/plugins-out)

# The install layout (docs/operations.md "Install"): plugins in
# <libdir>/mqhub, the dashboard in <datadir>/mqhub/www. The installed programs
# find them relative to themselves (docs/architecture.md "Install layout"), so
# two relative paths are compiled in: from the bin folder to the plugin
# folder (mqhubd) and from the plugin folder to the dashboard (websocket.so).
# Relative paths hold for any prefix given to `cmake --install --prefix`.
set(MQHUB_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/mqhub)
set(MQHUB_INSTALL_WWWDIR ${CMAKE_INSTALL_DATADIR}/mqhub/www)
file(RELATIVE_PATH MQHUB_BIN_TO_PLUGINDIR ${CMAKE_INSTALL_FULL_BINDIR}
     ${CMAKE_INSTALL_FULL_LIBDIR}/mqhub)
file(RELATIVE_PATH MQHUB_PLUGINDIR_TO_WWW ${CMAKE_INSTALL_FULL_LIBDIR}/mqhub
     ${CMAKE_INSTALL_FULL_DATADIR}/mqhub/www)

# mqhub_add_plugin(<name> SOURCES <files...> [LIBS <targets...>])
# A MODULE library "<name>.so" (no "lib" prefix), hidden visibility: only
# mqhub_plugin_entry is exported (mark it MQHUB_PLUGIN_EXPORT, mqhub/plugin.h).
# What it takes from static libraries (mqhub_util) stays hidden too.
# Installed into MQHUB_INSTALL_PLUGINDIR, except the test plugins of tests/.
function(mqhub_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${MQHUB_PLUGIN_OUT})
  target_link_options(${name} PRIVATE -Wl,--exclude-libs,ALL)
  target_link_libraries(${name} PRIVATE mqhub_api mqhub_options ${P_LIBS})
  if(NOT CMAKE_CURRENT_SOURCE_DIR MATCHES "^${CMAKE_SOURCE_DIR}/tests(/|$)")
    install(TARGETS ${name} LIBRARY DESTINATION ${MQHUB_INSTALL_PLUGINDIR})
  endif()
endfunction()
