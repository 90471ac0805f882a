# ffnlab_add_plugin(NAME SOURCES...) — one plugin shared library.
#
# NAME is the file stem: ffn_dense → ffn_dense.so, whose descriptor's name is
# "dense". Plugins see only the public SDK headers and export one symbol.
function(ffnlab_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY "${FFNLAB_PLUGIN_BUILD_DIR}")
  target_include_directories(${name} PRIVATE "${CMAKE_SOURCE_DIR}/framework/include")
  target_link_libraries(${name} PRIVATE m)
  install(TARGETS ${name} LIBRARY DESTINATION "${FFNLAB_PLUGIN_INSTALL_DIR}")
  set_property(GLOBAL APPEND PROPERTY FFNLAB_PLUGIN_TARGETS ${name})
endfunction()
