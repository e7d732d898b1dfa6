// Device discovery, streams, device buffers and the copy-bandwidth probe of kernels/cuda/cuda.h. The probe is the
// yardstick of the decode kernels: a matrix-vector product streams its weights once, so its GB/s is compared with
// what a plain copy kernel reaches on the same device in the same run (herd_cuda_bench).
#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace herd::kernels::cuda {

using detail::CudaStatus;
using detail::LaunchStatus;
using detail::Raw;

namespace {

struct Probe {
  bool available = false;
  std::string why_not;
  std::string description;
};

// Asked once: without a driver every runtime call fails the same way, and a missing device does not appear later.
const Probe& GetProbe() {
  static const Probe probe = [] {
    Probe p;
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      p.why_not = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
      cudaGetLastError();  // clear it, so that the next runtime call reports its own error
    } else if (count == 0) {
      p.why_not = "cudaGetDeviceCount found no CUDA device";
    } else {
      cudaDeviceProp prop{};
      const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
      if (pe != cudaSuccess) {
        p.why_not = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(pe);
      } else {
        p.available = true;
        char buf[512];
        std::snprintf(buf, sizeof(buf), "%.256s (sm_%d%d, %.1f GiB, %d SMs)", prop.name, prop.major, prop.minor,
                      static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), prop.multiProcessorCount);
        p.description = buf;
      }
    }
    return p;
  }();
  return probe;
}

}  // namespace

bool DeviceAvailable(std::string* why_not) {
  const Probe& p = GetProbe();
  if (!p.available && why_not != nullptr) *why_not = p.why_not;
  return p.available;
}

std::string DeviceDescription() {
  const Probe& p = GetProbe();
  return p.available ? p.description : "no CUDA device: " + p.why_not;
}

Result<Stream> CreateStream() {
  cudaStream_t s = nullptr;
  HERD_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
  return Stream{s};
}

void DestroyStream(Stream s) {
  if (s.handle != nullptr) cudaStreamDestroy(Raw(s));
}

Status Synchronize(Stream s) { return CudaStatus(cudaStreamSynchronize(Raw(s)), "cudaStreamSynchronize"); }

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (bytes == 0) return Result<DeviceBuffer>(std::move(b));
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return CudaStatus(e, ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  }
  b.data_ = p;
  b.bytes_ = bytes;
  return Result<DeviceBuffer>(std::move(b));
}

Status DeviceBuffer::Upload(const void* host, size_t bytes) {
  if (bytes > bytes_)
    return InvalidArgument("DeviceBuffer::Upload: " + std::to_string(bytes) + " bytes into a buffer of " +
                           std::to_string(bytes_));
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice), "DeviceBuffer::Upload (cudaMemcpy)");
}

Status DeviceBuffer::Download(void* host, size_t bytes) const {
  if (bytes > bytes_)
    return InvalidArgument("DeviceBuffer::Download: " + std::to_string(bytes) + " bytes from a buffer of " +
                           std::to_string(bytes_));
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost), "DeviceBuffer::Download (cudaMemcpy)");
}

Status DeviceBuffer::Fill(int value, Stream s) {
  if (bytes_ == 0) return Status::Ok();
  return CudaStatus(cudaMemsetAsync(data_, value, bytes_, Raw(s)), "DeviceBuffer::Fill (cudaMemsetAsync)");
}

namespace {

// 16-byte loads and stores, grid-stride: the access pattern the matrix-vector kernels aim for.
__global__ void CopyKernel(const int4* __restrict__ src, int4* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

// The median time of one copy of `bytes` (rounded down to 16) between two fresh buffers.
Result<double> TimeCopy(int64_t bytes, int reps) {
  const int64_t n = bytes / 16;
  HERD_ASSIGN_OR_RETURN(DeviceBuffer src, DeviceBuffer::Allocate(static_cast<size_t>(n) * 16));
  HERD_ASSIGN_OR_RETURN(DeviceBuffer dst, DeviceBuffer::Allocate(static_cast<size_t>(n) * 16));
  HERD_RETURN_IF_ERROR(src.Fill(1));
  int sms = 0;
  HERD_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute"));
  return MedianMs(
      [&] {
        CopyKernel<<<sms * 4, 512>>>(src.as<int4>(), dst.as<int4>(), n);
        return LaunchStatus("herd_cuda CopyKernel");
      },
      2, reps);
}

}  // namespace

double CopyBandwidthGBs(int64_t bytes, int reps, std::string* error) {
  std::string why;
  Status st = Status::Ok();
  if (!DeviceAvailable(&why)) {
    st = Unavailable("CopyBandwidthGBs: no CUDA device: " + why);
  } else if (bytes < 16 || reps < 1) {
    st = InvalidArgument("CopyBandwidthGBs: needs bytes >= 16 and reps >= 1");
  }
  Result<double> ms = st.ok() ? TimeCopy(bytes, reps) : Result<double>(st);
  if (!ms.ok() || *ms <= 0.0) {
    if (error != nullptr) *error = ms.ok() ? "CopyBandwidthGBs: a copy took no time" : ms.status().ToString();
    return 0.0;
  }
  return 2.0 * static_cast<double>(bytes / 16 * 16) / (*ms * 1e-3) / 1e9;
}

Result<double> MedianMs(const std::function<Status()>& launch, int warmups, int reps, Stream s) {
  if (reps < 1) return InvalidArgument("MedianMs: reps must be at least 1");
  cudaEvent_t start = nullptr, stop = nullptr;
  HERD_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&start), "cudaEventCreate"));
  Status st = CudaStatus(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<float> ms;
  for (int r = -warmups; st.ok() && r < reps; ++r) {
    st = CudaStatus(cudaEventRecord(start, Raw(s)), "cudaEventRecord");
    if (st.ok()) st = launch();
    if (st.ok()) st = CudaStatus(cudaEventRecord(stop, Raw(s)), "cudaEventRecord");
    if (st.ok()) st = CudaStatus(cudaEventSynchronize(stop), "MedianMs (cudaEventSynchronize)");
    float t = 0.0f;
    if (st.ok()) st = CudaStatus(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    if (st.ok() && r >= 0) ms.push_back(t);
  }
  cudaEventDestroy(start);
  if (stop != nullptr) cudaEventDestroy(stop);
  if (!st.ok()) return st;
  std::sort(ms.begin(), ms.end());
  return static_cast<double>(ms[ms.size() / 2]);
}

}  // namespace herd::kernels::cuda
