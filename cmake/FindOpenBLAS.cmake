# FindOpenBLAS: the CBLAS interface of OpenBLAS (Debian: libopenblas-dev).
#
# Debian installs OpenBLAS under a variant directory (openblas-pthread, openblas-openmp,
# openblas64-*) and exposes the chosen one through update-alternatives; we look in the
# alternatives location first, then in the variant directories.
#
# Defines the imported target OpenBLAS::OpenBLAS (cblas.h on the include path).
include(FindPackageHandleStandardArgs)

find_path(OpenBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas openblas-pthread openblas-openmp
                x86_64-linux-gnu x86_64-linux-gnu/openblas-pthread
                aarch64-linux-gnu aarch64-linux-gnu/openblas-pthread)
find_library(OpenBLAS_LIBRARY NAMES openblas
  PATH_SUFFIXES openblas-pthread openblas-openmp)

find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR)

if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIR}")
endif()
mark_as_advanced(OpenBLAS_INCLUDE_DIR OpenBLAS_LIBRARY)
