# cmake/FfnlabPlugin.cmake — plugins built inside the ffnlab tree.
#
# Defines ffnlab::sdk (the public headers; exported by the install as the
# same target for out-of-tree plugins) and pulls in ffnlab_add_plugin() from
# ffnlabPluginFunctions.cmake, the one definition the installed package
# shares: in-tree plugins go to the build's plugin folder and install to
# <prefix>/lib/ffnlab/plugins, where `ffnlab` looks for them by name. The
# destination is relative so `cmake --install --prefix DIR` relocates them
# with the binary and the headers.
if(NOT TARGET ffnlab_sdk)
  add_library(ffnlab_sdk INTERFACE)
  add_library(ffnlab::sdk ALIAS ffnlab_sdk)
  set_target_properties(ffnlab_sdk PROPERTIES EXPORT_NAME sdk)
  target_include_directories(ffnlab_sdk INTERFACE
    "$<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/framework/include>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  target_link_libraries(ffnlab_sdk INTERFACE m)
endif()
set(FFNLAB_PLUGIN_OUTPUT_DIR "${FFNLAB_PLUGIN_BUILD_DIR}")
set(FFNLAB_PLUGIN_INSTALL_DESTINATION "${CMAKE_INSTALL_LIBDIR}/ffnlab/plugins")
include("${CMAKE_CURRENT_LIST_DIR}/ffnlabPluginFunctions.cmake")
