# The multi-process communicators (framework/comm/). The single-process one
# is always built; comm_mpi.c joins with FFNLAB_HAVE_MPI (links MPI::MPI_C,
# defines FFNLAB_HAVE_MPI), comm_nccl.c with FFNLAB_HAVE_NCCL (links NCCL
# and the CUDA runtime, defines FFNLAB_HAVE_NCCL). The definitions are
# PUBLIC so the tests see which communicators exist.
if(FFNLAB_HAVE_MPI)
  target_sources(ffnlab_core PRIVATE framework/comm/comm_mpi.c)
  target_link_libraries(ffnlab_core PUBLIC MPI::MPI_C)
  target_compile_definitions(ffnlab_core PUBLIC FFNLAB_HAVE_MPI=1)
endif()

if(FFNLAB_HAVE_NCCL)
  find_package(CUDAToolkit REQUIRED)
  target_sources(ffnlab_core PRIVATE framework/comm/comm_nccl.c)
  target_include_directories(ffnlab_core PRIVATE ${NCCL_INCLUDE_DIR})
  target_link_libraries(ffnlab_core PUBLIC CUDA::cudart ${NCCL_LIBRARY})
  target_compile_definitions(ffnlab_core PUBLIC FFNLAB_HAVE_NCCL=1)
endif()

set(_comms "single process")
if(FFNLAB_HAVE_MPI)
  string(APPEND _comms ", MPI")
endif()
if(FFNLAB_HAVE_NCCL)
  string(APPEND _comms ", NCCL")
endif()
message(STATUS "ffnlab: communicators: ${_comms}")
