# Optional parts: CUDA, MPI, NCCL, libcurl. Each option is AUTO (build when
# found), ON (fail when missing) or OFF. The results are
# FFNLAB_HAVE_CUDA/MPI/NCCL/CURL. With CUDA found, the CUDA language is
# enabled here (architectures 80 and 90 unless CMAKE_CUDA_ARCHITECTURES says
# otherwise) and the toolkit's imported targets (CUDA::cudart ...) exist.
function(ffnlab_optional opt found what)
  if(${opt} STREQUAL "OFF")
    set(FFNLAB_HAVE_${what} OFF PARENT_SCOPE)
  elseif(${found})
    set(FFNLAB_HAVE_${what} ON PARENT_SCOPE)
  elseif(${opt} STREQUAL "ON")
    message(FATAL_ERROR "FFNLAB_${what}=ON but ${what} was not found")
  else()
    set(FFNLAB_HAVE_${what} OFF PARENT_SCOPE)
  endif()
endfunction()

if(NOT FFNLAB_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  set(_cuda_found OFF)
  if(CMAKE_CUDA_COMPILER)
    set(_cuda_found ON)
  endif()
endif()
ffnlab_optional(FFNLAB_CUDA _cuda_found CUDA)
if(FFNLAB_HAVE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90")  # A100 (and sm_86/89 by compatibility), H100/H200
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

# libcurl: only `ffnlab data fetch` downloads; without it that command says so.
if(NOT FFNLAB_CURL STREQUAL "OFF")
  find_package(CURL QUIET)
endif()
ffnlab_optional(FFNLAB_CURL CURL_FOUND CURL)

if(NOT FFNLAB_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS C QUIET)
endif()
ffnlab_optional(FFNLAB_MPI MPI_C_FOUND MPI)

set(_nccl_found OFF)
if(FFNLAB_HAVE_CUDA AND NOT FFNLAB_NCCL STREQUAL "OFF")
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(_nccl_found ON)
  endif()
endif()
ffnlab_optional(FFNLAB_NCCL _nccl_found NCCL)

message(STATUS "ffnlab: CUDA ${FFNLAB_HAVE_CUDA}, MPI ${FFNLAB_HAVE_MPI}, NCCL ${FFNLAB_HAVE_NCCL}, libcurl ${FFNLAB_HAVE_CURL}")
