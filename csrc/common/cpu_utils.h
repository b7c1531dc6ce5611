// Helpers shared by the CPU kernels: Eigen array maps over raw buffers, the split of a pass
// over the TensorFlow thread pool and the kernel registration. Include it in a file that
// defines EIGEN_USE_THREADS before its first include.
#ifndef TFP_MNF_CSRC_COMMON_CPU_UTILS_H_
#define TFP_MNF_CSRC_COMMON_CPU_UTILS_H_

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

// Registers Kernel<CPUDevice, T> as op `name`'s CPU kernel for the type attribute T; the
// families' MNF_REGISTER_*_KERNELS macros expand it.
#define MNF_REGISTER_CPU(name, Kernel, T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name(name).Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), Kernel<CPUDevice, T>);

#endif  // TFP_MNF_CSRC_COMMON_CPU_UTILS_H_
