# Helper functions for mqhub's build.

# All plugins land in one folder of the build tree, where mqhubd looks by default.
set(MQHUB_PLUGIN_OUT ${CMAKE_BINARY_DIR}/plugins-out)

# mqhub_add_plugin(<name> SOURCES <files...> [LIBS <targets...>])
# A MODULE library "<name>.so" (no "lib" prefix), hidden visibility: only
# mqhub_plugin_entry is exported (mark it MQHUB_PLUGIN_EXPORT, mqhub/plugin.h).
# What it takes from static libraries (mqhub_util) stays hidden too.
function(mqhub_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${MQHUB_PLUGIN_OUT})
  target_link_options(${name} PRIVATE -Wl,--exclude-libs,ALL)
  target_link_libraries(${name} PRIVATE mqhub_api mqhub_options ${P_LIBS})
endfunction()
