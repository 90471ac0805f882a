# cmake/ffnlabPluginFunctions.cmake — how an ffnlab plugin library is built.
#
# One definition for both sides of the SDK: the ffnlab build includes it
# through cmake/FfnlabPlugin.cmake for plugins/* and tasks/*, and the
# installed package (find_package(ffnlab) → ffnlabConfig.cmake) includes it
# for plugins built out of tree. Both need the target ffnlab::sdk (the public
# headers, framework/include/ffnlab, and libm for ffnlab/rng.h).
#
# ffnlab_add_plugin(NAME SOURCES...)
#   NAME is the file stem: ffn_mine → ffn_mine.so, whose descriptor's name
#   must be "mine" (the loader refuses a mismatch). The library is a MODULE
#   (dlopen'ed, never linked), without the "lib" prefix, built with hidden
#   visibility so FL_EXPORT's ffnlab_plugin_v1 is its only exported symbol,
#   against the SDK headers alone. It is written to FFNLAB_PLUGIN_OUTPUT_DIR
#   (default <build>/plugins) and installed to
#   FFNLAB_PLUGIN_INSTALL_DESTINATION (default <prefix>/lib/ffnlab/plugins).
#
# ffnlab_add_conformance_test(TARGET [OPTIONS])
#   Registers ctest test conformance_<name>: the installed ffnlab-conformance
#   run on TARGET's library with option text OPTIONS ("k=v,...").
include_guard(GLOBAL)

function(ffnlab_add_plugin name)
  if(NOT name MATCHES "^(ffn|task)_.+")
    message(FATAL_ERROR "ffnlab_add_plugin(${name}): the name must be ffn_<name> or task_<name> "
                        "(the file stem the loader matches against the descriptor's name)")
  endif()
  if(NOT ARGN)
    message(FATAL_ERROR "ffnlab_add_plugin(${name}): no source files given")
  endif()
  set(out_dir "${FFNLAB_PLUGIN_OUTPUT_DIR}")
  if(NOT out_dir)
    set(out_dir "${CMAKE_BINARY_DIR}/plugins")
  endif()
  set(install_dir "${FFNLAB_PLUGIN_INSTALL_DESTINATION}")
  if(NOT install_dir)
    include(GNUInstallDirs)
    set(install_dir "${CMAKE_INSTALL_LIBDIR}/ffnlab/plugins")
  endif()
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${out_dir}")
  target_link_libraries(${name} PRIVATE ffnlab::sdk)
  install(TARGETS ${name} LIBRARY DESTINATION "${install_dir}")
  set_property(GLOBAL APPEND PROPERTY FFNLAB_PLUGIN_TARGETS ${name})
endfunction()

function(ffnlab_add_conformance_test target)
  if(NOT FFNLAB_CONFORMANCE_EXECUTABLE)
    message(FATAL_ERROR "ffnlab_add_conformance_test: this ffnlab was installed without "
                        "ffnlab-conformance (it is built with FFNLAB_TESTS=ON)")
  endif()
  string(REGEX REPLACE "^(ffn|task)_" "" name "${target}")
  add_test(NAME conformance_${name}
           COMMAND "${FFNLAB_CONFORMANCE_EXECUTABLE}" "$<TARGET_FILE:${target}>" "${name}:${ARGV1}")
endfunction()
