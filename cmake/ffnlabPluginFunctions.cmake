# cmake/ffnlabPluginFunctions.cmake — how an ffnlab plugin library is built.
#
# One definition for both sides of the SDK: the ffnlab build includes it
# through cmake/FfnlabPlugin.cmake for plugins/* and tasks/*, and the
# installed package (find_package(ffnlab) → ffnlabConfig.cmake) includes it
# for plugins built out of tree. Both need the target ffnlab::sdk (the public
# headers, framework/include/ffnlab, and libm for ffnlab/rng.h).
#
# ffnlab_add_plugin(NAME [SOURCES] src... [CUDA_SOURCES cu...])
#   NAME is the file stem: ffn_mine → ffn_mine.so, whose descriptor's name
#   must be "mine" (the loader refuses a mismatch). The library is a MODULE
#   (dlopen'ed, never linked), without the "lib" prefix, built with hidden
#   visibility so FL_EXPORT's ffnlab_plugin_v1 is its only exported symbol,
#   against the SDK headers alone. It is written to FFNLAB_PLUGIN_OUTPUT_DIR
#   (default <build>/plugins) and installed to
#   FFNLAB_PLUGIN_INSTALL_DESTINATION (default <prefix>/lib/ffnlab/plugins).
#   CUDA_SOURCES are the plugin's own GPU kernels (.cu, see
#   ffnlab/kernel_cuda.h): when the project has the CUDA language enabled
#   they are compiled into the library, which then links the CUDA runtime
#   and is built with FFNLAB_PLUGIN_CUDA defined (FL_DEVICES_BUILT then
#   includes CUDA); without it the plugin is built for the CPU alone, and
#   says so. The target's FFNLAB_PLUGIN_CUDA_SOURCES property keeps them
#   (ffnlab's own tests also build them for the CPU emulation of CUDA).
# ffnlab_add_conformance_test(TARGET [OPTIONS])
#   Registers ctest test conformance_<name>: the installed ffnlab-conformance
#   run on TARGET's library with option text OPTIONS ("k=v,...").
include_guard(GLOBAL)

function(ffnlab_add_plugin name)
  cmake_parse_arguments(ARG "" "" "SOURCES;CUDA_SOURCES" ${ARGN})
  set(sources ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  if(NOT name MATCHES "^(ffn|task)_.+")
    message(FATAL_ERROR "ffnlab_add_plugin(${name}): the name must be ffn_<name> or task_<name> "
                        "(the file stem the loader matches against the descriptor's name)")
  endif()
  if(NOT sources)
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
  add_library(${name} MODULE ${sources})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${out_dir}")
  target_link_libraries(${name} PRIVATE ffnlab::sdk)
  if(ARG_CUDA_SOURCES)
    set(cuda_abs "")
    foreach(src ${ARG_CUDA_SOURCES})
      get_filename_component(abs "${src}" ABSOLUTE)
      list(APPEND cuda_abs "${abs}")
    endforeach()
    set_target_properties(${name} PROPERTIES FFNLAB_PLUGIN_CUDA_SOURCES "${cuda_abs}")
    get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
    if("CUDA" IN_LIST languages)
      find_package(CUDAToolkit REQUIRED)
      target_sources(${name} PRIVATE ${ARG_CUDA_SOURCES})
      target_compile_definitions(${name} PRIVATE FFNLAB_PLUGIN_CUDA=1)
      set_target_properties(${name} PROPERTIES CUDA_RUNTIME_LIBRARY Shared)
      target_link_libraries(${name} PRIVATE CUDA::cudart)
    else()
      message(STATUS "${name}: CUDA is not enabled in this project; the plugin is built for the CPU only")
    endif()
  endif()
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
