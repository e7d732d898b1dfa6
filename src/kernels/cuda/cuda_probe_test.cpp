// The CUDA kernels' entry points on any machine (ctest label `unit`, no GPU needed): asking for a device must not
// crash or hang without a GPU or driver, argument errors come back as a Status before anything touches the device,
// and without a device every call that needs one says why instead of aborting.
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/cuda.h"

namespace herd::kernels::cuda {
namespace {

TEST(CudaProbe, DeviceAvailableAnswersWithAReason) {
  std::string why;
  const bool available = DeviceAvailable(&why);
  if (available) {
    EXPECT_EQ(DeviceDescription().find("no CUDA device"), std::string::npos) << DeviceDescription();
  } else {
    EXPECT_FALSE(why.empty()) << "DeviceAvailable returned false without a reason";
    EXPECT_NE(DeviceDescription().find(why), std::string::npos) << DeviceDescription();
  }
  std::string again;
  EXPECT_EQ(DeviceAvailable(&again), available);  // cached, and the same answer
  EXPECT_EQ(again, why);
  std::printf("%s\n", DeviceDescription().c_str());
}

TEST(CudaProbe, ArgumentsAreCheckedBeforeTheDevice) {
  void* fake = reinterpret_cast<void*>(256);  // never dereferenced: every call below fails its checks first
  float* f = static_cast<float*>(fake);
  EXPECT_EQ(MatMul(DType::kQ4_K, fake, 1, 256, f, 1, f).code(), StatusCode::kNotSupported);
  EXPECT_EQ(MatMul(DType::kQ8_0, fake, 1, 48, f, 1, f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MatMul(DType::kF32, fake, 0, 48, f, 1, f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MatMul(DType::kF32, nullptr, 1, 48, f, 1, f).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(MatMul(DType::kF32, fake, 1, 48, f, 0, f).ok());  // nothing to do
  EXPECT_EQ(RopeRows(f, 1, f, 1, 1, 7, nullptr, nullptr, 0, false, 1e-5f, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RouteTopK(f, 1, 4, 5, nullptr, f).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Attention(f, 8, 1, 3, 2, 8, f, f, 16, nullptr, nullptr, 1.0f, f, 8).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbedRows(DType::kQ6_K, fake, 210, nullptr, 1, 256, f).code(), StatusCode::kNotSupported);
}

TEST(CudaProbe, WithoutADeviceCallsFailWithTheCudaError) {
  std::string why;
  if (DeviceAvailable(&why)) GTEST_SKIP() << "a CUDA device is present: the GPU tests cover the calls";
  auto b = DeviceBuffer::Allocate(1024);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("cudaMalloc"), std::string::npos) << b.status().ToString();
  // A launch (the pointers are never dereferenced on the host) reports the kernel and the runtime's error.
  void* fake = reinterpret_cast<void*>(256);
  float* f = static_cast<float*>(fake);
  const Status st = MatMul(DType::kF32, fake, 4, 64, f, 1, f);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("herd_cuda MatVec"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("cuda"), std::string::npos) << st.ToString();
  std::string error;
  EXPECT_EQ(CopyBandwidthGBs(1 << 20, 3, &error), 0.0);
  EXPECT_NE(error.find("no CUDA device"), std::string::npos) << error;
  EXPECT_FALSE(Synchronize().ok());
}

}  // namespace
}  // namespace herd::kernels::cuda
