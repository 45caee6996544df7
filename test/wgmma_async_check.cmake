# weft/test/wgmma_async_check.cmake v1 — fails when ptxas serializes the wgmma instructions of a flash attention
# kernel. ptxas does that when a kernel runs short of registers, without a spill and with only an info line
# ("C7512 ... wgmma.mma_async instructions are serialized due to insufficient register resources"): every product
# then waits for the one before it, which cost the hd-64 backward a quarter of its speed (bench/RESULTS.md,
# twentieth session). Run by ctest:
#   cmake -DNVCC=nvcc -DSOURCE_DIR=<weft> -DWORK_DIR=<scratch> -P wgmma_async_check.cmake
foreach(name flash_attention flash_attention_bwd)
  execute_process(
    COMMAND ${NVCC} -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a
            -I${SOURCE_DIR}/cuda -I${SOURCE_DIR}/src -Xptxas -v -c ${SOURCE_DIR}/cuda/${name}.cu
            -o ${WORK_DIR}/${name}_ptxas_check.o
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cuda/${name}.cu did not compile:\n${err}")
  endif()
  string(REGEX MATCHALL "[^\n]*wgmma[^\n]*serialized[^\n]*" notes "${out}${err}")
  if(notes)
    string(REPLACE ";" "\n" notes "${notes}")
    message(FATAL_ERROR "cuda/${name}.cu: ptxas serialized the wgmma instructions of a kernel:\n${notes}")
  endif()
  message(STATUS "cuda/${name}.cu: ptxas kept every kernel's wgmma instructions asynchronous")
endforeach()
