// Helpers shared by the CPU kernels: Eigen array maps over raw buffers and the split of a
// pass over the TensorFlow thread pool. Include it in a file that defines EIGEN_USE_THREADS
// before its first include.
#ifndef TFP_MNF_CSRC_CPU_KERNEL_UTILS_H_
#define TFP_MNF_CSRC_CPU_KERNEL_UTILS_H_

#include <cstdint>

#include "Eigen/Core"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace mnf {

using CPUDevice = Eigen::ThreadPoolDevice;
template <typename T>
using Vector = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using VectorMap = Eigen::Map<Vector<T>>;
template <typename T>
using ConstVectorMap = Eigen::Map<const Vector<T>>;

// Below this many estimated cycles a pass runs on the calling thread: waking pool threads
// costs more than it saves (measured on the 2-core machine, where other work competes).
constexpr double kMinParallelCycles = 4e5;

// Runs fn(begin, end) over [0, n), an item costing `cycles` (compute and memory traffic): on
// the calling thread when the pass is small, else split over the thread pool.
template <typename Fn>
void ParallelRange(tensorflow::OpKernelContext* ctx, int64_t n, double cycles, Fn fn) {
  if (n * cycles < kMinParallelCycles) {
    fn(0, n);
    return;
  }
  ctx->eigen_device<CPUDevice>().parallelFor(
      n, Eigen::TensorOpCost(0, 0, cycles),
      [&](Eigen::DenseIndex begin, Eigen::DenseIndex end) { fn(begin, end); });
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CPU_KERNEL_UTILS_H_
