// Multi-resolution hash-grid encoding (Instant-NGP) on the CPU: forward and backward.
//
// The Python side (avatar/render/hashgrid.py) owns the level layout and passes it
// in as three small tensors, so this file and the PyTorch reference
// (avatar/render/hashgrid_reference.py) cannot disagree about it:
//
//   resolutions (L,)   int64  grid cells per axis at level l; vertices are 0..res
//   offsets     (L+1,) int64  first table row of level l; level l owns rows
//                             [offsets[l], offsets[l+1])
//   hashed      (L,)   uint8  1: rows = 2^T, vertex -> row by the spatial hash
//                             0: rows = (res+1)^3, vertex -> row densely (x fastest)
//
// Per point and level: p = clamp(x, 0, 1) * res, cell i = min(floor(p), res - 1),
// fraction f = p - i in [0, 1], and the output is the trilinear blend of the 8
// corner rows. The clamp maps NaN to 0 so a bad input can never index out of range.
//
// Determinism: every output value and every x gradient is computed by one thread
// in a fixed order, and the table gradient is built one level per task (levels own
// disjoint rows) with a sequential scatter over points, so results are bitwise
// identical across runs and thread counts without atomics.
//
// Speed: with T = 19 a hashed level is 4 MB, so nearly every corner is a cache
// miss and the kernel is bound by memory latency, not arithmetic. Hence: levels
// are walked one at a time (a level's table stays partly in L2), corner rows are
// computed a batch ahead so that they can be prefetched, and index arithmetic is
// vectorised over the batch (small levels, which stay in L2, skip the prefetch).
// Level passes write level-major scratch, contiguous per level, rather than
// striding through the (N, L*F) output. With AVX-512 and F = 2 the forward also
// gathers 8 points' rows per instruction, which trims its instruction count (the
// part of the time that is not waiting on memory).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

constexpr uint32_t kPrimeY = 2654435761u;  // Instant-NGP primes; x uses 1
constexpr uint32_t kPrimeZ = 805459861u;
constexpr int kBatch = 256;         // points located together (the Batch fits in L1)
constexpr int kPrefetchAhead = 16;  // points between a row's prefetch and its use
// A level table smaller than this mostly stays in L2 after its first batches, so
// prefetching its rows would only cost instructions.
constexpr int64_t kPrefetchMinBytes = int64_t(1) << 20;

struct Level {
  float res;           // cells per axis, as the multiplier of x
  int32_t last_cell;   // res - 1: the cell used at x == 1
  int64_t offset;      // first table row of the level
  int64_t rows;        // table rows of the level
  uint32_t stride_y;   // dense: rows per y step, res + 1
  uint32_t stride_z;   // dense: rows per z step, (res + 1)^2
  uint32_t mask;       // hashed: rows - 1 (rows is a power of two)
  bool hashed;
};

std::vector<Level> make_levels(const torch::Tensor& resolutions, const torch::Tensor& offsets,
                               const torch::Tensor& hashed) {
  TORCH_CHECK(resolutions.dtype() == torch::kInt64 && offsets.dtype() == torch::kInt64,
              "resolutions and offsets must be int64");
  TORCH_CHECK(hashed.dtype() == torch::kUInt8, "hashed must be uint8");
  const int64_t L = resolutions.numel();
  TORCH_CHECK(offsets.numel() == L + 1 && hashed.numel() == L, "layout tensors disagree on L");
  const auto r = resolutions.contiguous(), o = offsets.contiguous(), h = hashed.contiguous();
  const int64_t* rp = r.data_ptr<int64_t>();
  const int64_t* op = o.data_ptr<int64_t>();
  const uint8_t* hp = h.data_ptr<uint8_t>();
  std::vector<Level> levels(L);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t res = rp[l], rows = op[l + 1] - op[l];
    TORCH_CHECK(res >= 1 && res < (1 << 20), "resolution out of range at level ", l);
    Level& lv = levels[l];
    lv.res = static_cast<float>(res);
    lv.last_cell = static_cast<int32_t>(res - 1);
    lv.offset = op[l];
    lv.rows = rows;
    lv.hashed = hp[l] != 0;
    lv.stride_y = static_cast<uint32_t>(res + 1);
    lv.stride_z = static_cast<uint32_t>((res + 1) * (res + 1));
    lv.mask = static_cast<uint32_t>(rows - 1);
    if (lv.hashed) {
      TORCH_CHECK(rows > 0 && rows <= (int64_t(1) << 30) && (rows & (rows - 1)) == 0,
                  "hashed level ", l, " needs 2^T rows, T <= 30");
    } else {
      TORCH_CHECK(rows == (res + 1) * (res + 1) * (res + 1) && rows <= (int64_t(1) << 30),
                  "dense level ", l, " needs (res+1)^3 rows");
    }
  }
  return levels;
}

// Corner rows and weights of a batch of points at one level, as structure of
// arrays so that the loops over points vectorise.
struct Batch {
  uint32_t row[8][kBatch];  // row within the level of corner c = bit0 (x) | bit1 (y) | bit2 (z)
  float w[8][kBatch];       // trilinear weight of the corner
  float f[3][kBatch];       // fraction within the cell per axis (x gradient only)
  float inside[3][kBatch];  // 1 where 0 <= x <= 1 on the axis (the clamp passes gradient), else 0
};

// Fractions is true only for the x gradient: the other passes skip those stores.
template <bool Hashed, bool Fractions>
void locate_batch(const Level& lv, const float* x, int n, Batch& b) {
  // Per axis, the two vertex terms of the row index: hashed, x * 1, y * kPrimeY and
  // z * kPrimeZ (combined by xor); dense, x, y * (res+1) and z * (res+1)^2 (summed).
  const uint32_t step[3] = {1u, Hashed ? kPrimeY : lv.stride_y, Hashed ? kPrimeZ : lv.stride_z};
#pragma omp simd
  for (int p = 0; p < n; ++p) {
    uint32_t term[3][2];
    float weight[3][2];
#pragma GCC unroll 3
    for (int d = 0; d < 3; ++d) {
      const float v = x[3 * p + d];
      if (Fractions) b.inside[d][p] = (v >= 0.f && v <= 1.f) ? 1.f : 0.f;
      float c = v > 0.f ? v : 0.f;  // written so that NaN becomes 0
      c = c < 1.f ? c : 1.f;
      const float pos = c * lv.res;
      int32_t i = static_cast<int32_t>(pos);  // pos >= 0: truncation is floor
      i = i < lv.last_cell ? i : lv.last_cell;
      const float f = pos - static_cast<float>(i);
      if (Fractions) b.f[d][p] = f;
      term[d][0] = static_cast<uint32_t>(i) * step[d];
      term[d][1] = term[d][0] + step[d];
      weight[d][0] = 1.f - f;
      weight[d][1] = f;
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const int bx = c & 1, by = (c >> 1) & 1, bz = c >> 2;
      b.row[c][p] = Hashed ? ((term[0][bx] ^ term[1][by] ^ term[2][bz]) & lv.mask)
                           : term[0][bx] + term[1][by] + term[2][bz];
      b.w[c][p] = weight[0][bx] * weight[1][by] * weight[2][bz];
    }
  }
}

template <bool Fractions = false>
void locate(const Level& lv, const float* x, int n, Batch& b) {
  if (lv.hashed)
    locate_batch<true, Fractions>(lv, x, n, b);
  else
    locate_batch<false, Fractions>(lv, x, n, b);
}

// One table row as a single vector value: a row is read, updated and written
// as a unit rather than feature by feature. (Declared through a struct: GCC
// ignores a dependent vector_size written directly on an alias template.)
template <int F>
struct FeatureVector {
  typedef float type __attribute__((vector_size(F * sizeof(float))));
};
template <int F>
using Features = typename FeatureVector<F>::type;
static_assert(sizeof(Features<2>) == 2 * sizeof(float), "feature vector must hold a whole row");

template <int F>
inline Features<F> load_features(const float* p) {
  Features<F> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int F>
inline void store_features(float* p, const Features<F>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// The rows of point p's 8 corners, requested ahead of use: hiding the latency of
// these cache misses is most of the kernel's speed.
template <int F, bool ForWrite>
inline void prefetch_corners(const float* level_table, const Batch& b, int p) {
  for (int c = 0; c < 8; ++c)
    __builtin_prefetch(level_table + static_cast<int64_t>(b.row[c][p]) * F, ForWrite ? 1 : 0, 3);
}

template <int F>
inline bool worth_prefetching(const Level& lv) {
  return lv.rows * F * static_cast<int64_t>(sizeof(float)) > kPrefetchMinBytes;
}

int num_threads() { return std::max(1, at::get_num_threads()); }

// Calls body(level, first_point, batch_size, located_batch) for every level and
// every batch of points: each thread takes one contiguous range of points and
// walks it level by level, so that one level's table is hot at a time. Then
// finish(begin, end) runs on the same thread for its range of points.
template <bool Fractions, typename Body, typename Finish>
void for_each_level_batch(const std::vector<Level>& levels, const float* x, int64_t n,
                          const Body& body, const Finish& finish) {
  const int threads = num_threads();
  const int64_t per_thread = ((n + threads - 1) / threads + kBatch - 1) / kBatch * kBatch;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = t * per_thread, end = std::min(n, begin + per_thread);
    Batch b;
    for (int64_t l = 0; l < static_cast<int64_t>(levels.size()); ++l) {
      for (int64_t first = begin; first < end; first += kBatch) {
        const int m = static_cast<int>(std::min<int64_t>(kBatch, end - first));
        locate<Fractions>(levels[l], x + 3 * first, m, b);
        body(l, first, m, b);
      }
    }
    if (begin < end) finish(begin, end);
  }
}

// Copies points [begin, end) between the point-major (N, L, F) layout of the
// encoding and the level-major (L, N, F) layout that a level-at-a-time pass reads
// or writes contiguously. (torch's generic strided copy of this shape is several
// times slower.)
template <bool ToLevelMajor>
void transpose_points(const float* src, float* dst, int64_t n, int64_t L, int64_t F,
                      int64_t begin, int64_t end) {
  for (int64_t first = begin; first < end; first += kBatch) {
    const int64_t last = std::min(end, first + kBatch);
    for (int64_t l = 0; l < L; ++l)
      for (int64_t p = first; p < last; ++p) {
        const int64_t point_major = (p * L + l) * F, level_major = (l * n + p) * F;
        for (int64_t k = 0; k < F; ++k) {
          if (ToLevelMajor)
            dst[level_major + k] = src[point_major + k];
          else
            dst[point_major + k] = src[level_major + k];
        }
      }
  }
}

#ifdef __AVX512F__
// Forward blend of 8 consecutive points p..p+7 with F = 2 into o (their 16 output
// floats, contiguous): a row is 8 bytes, so a corner's 8 rows are one 64-bit gather,
// and the 8 corners are 8 fused multiply-adds in the same order as the scalar loop,
// which the build contracts to FMAs too (-ffp-contract=fast), so both give the same
// bits.
inline void blend_8_points_f2(const float* level_table, const Batch& b, int p, float* o) {
  const __m512i duplicate = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 acc = _mm512_setzero_ps();
  for (int c = 0; c < 8; ++c) {
    const __m256i rows = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&b.row[c][p]));
    const __m512d values = _mm512_i32gather_pd(rows, level_table, 8);
    const __m512 w8 = _mm512_castps256_ps512(_mm256_loadu_ps(&b.w[c][p]));
    const __m512 w = _mm512_permutexvar_ps(duplicate, w8);  // each weight for both features
    acc = _mm512_fmadd_ps(w, _mm512_castpd_ps(values), acc);
  }
  _mm512_storeu_ps(o, acc);  // level-major output: the 8 points' rows are contiguous
}
#endif

// scratch is (L, N, F): each level pass writes its outputs contiguously there (a
// point-major write would touch a new cache line per point), and each thread then
// interleaves its own points into out (N, L*F).
template <int F>
void forward_impl(const std::vector<Level>& levels, const float* x, const float* table,
                  float* scratch, float* out, int64_t n) {
  const int64_t L = static_cast<int64_t>(levels.size());
  auto blend = [&](int64_t l, int64_t first, int m, const Batch& b) {
    const float* level_table = table + levels[l].offset * F;
    float* o = scratch + (l * n + first) * F;
    const bool prefetch = worth_prefetching<F>(levels[l]);
    int p = 0;
#ifdef __AVX512F__
    if constexpr (F == 2) {
      for (; p + 8 <= m; p += 8) {
        if (prefetch)
          for (int q = p + kPrefetchAhead; q < std::min(m, p + kPrefetchAhead + 8); ++q)
            prefetch_corners<F, false>(level_table, b, q);
        blend_8_points_f2(level_table, b, p, o + p * F);
      }
    }
#endif
    for (; p < m; ++p) {
      if (prefetch && p + kPrefetchAhead < m)
        prefetch_corners<F, false>(level_table, b, p + kPrefetchAhead);
      Features<F> acc = {};
      for (int c = 0; c < 8; ++c)
        acc += b.w[c][p] * load_features<F>(level_table + static_cast<int64_t>(b.row[c][p]) * F);
      store_features<F>(o + p * F, acc);
    }
  };
  auto interleave = [&](int64_t begin, int64_t end) {
    transpose_points<false>(scratch, out, n, L, F, begin, end);
  };
  for_each_level_batch<false>(levels, x, n, blend, interleave);
}

// grad_x must arrive zero-filled; levels are added in ascending order per point.
template <int F>
void backward_x_impl(const std::vector<Level>& levels, const float* x, const float* table,
                     const float* grad_out, float* grad_x, int64_t n) {
  const int64_t L = static_cast<int64_t>(levels.size());
  auto accumulate = [&](int64_t l, int64_t first, int m, const Batch& b) {
    const float* level_table = table + levels[l].offset * F;
    const float* g = grad_out + first * L * F + l * F;
    const bool prefetch = worth_prefetching<F>(levels[l]);
    // s[c][p]: d loss / d (weight of corner c)
    float s[8][kBatch];
    for (int p = 0; p < m; ++p) {
      if (prefetch && p + kPrefetchAhead < m)
        prefetch_corners<F, false>(level_table, b, p + kPrefetchAhead);
      for (int c = 0; c < 8; ++c) {
        const float* row = level_table + static_cast<int64_t>(b.row[c][p]) * F;
        float acc = 0.f;
        for (int k = 0; k < F; ++k) acc += g[p * L * F + k] * row[k];
        s[c][p] = acc;
      }
    }
    const float res = levels[l].res;
    for (int d = 0; d < 3; ++d) {
      const int d1 = (d + 1) % 3, d2 = (d + 2) % 3;
#pragma omp simd
      for (int p = 0; p < m; ++p) {
        // d w_c / d f_d = (+1 or -1) * the product of the other two axes' factors
        float dw = 0.f;
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          const float g1 = ((c >> d1) & 1) ? b.f[d1][p] : 1.f - b.f[d1][p];
          const float g2 = ((c >> d2) & 1) ? b.f[d2][p] : 1.f - b.f[d2][p];
          dw += (((c >> d) & 1) ? s[c][p] : -s[c][p]) * g1 * g2;
        }
        grad_x[3 * (first + p) + d] += dw * res * b.inside[d][p];
      }
    }
  };
  for_each_level_batch<true>(levels, x, n, accumulate, [](int64_t, int64_t) {});
}

// Levels sorted by decreasing row count, so that dynamic scheduling hands out the
// big (hashed, cache-missing) levels first and the small dense ones fill the gaps.
std::vector<int64_t> levels_largest_first(const std::vector<Level>& levels) {
  std::vector<int64_t> order(levels.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return levels[a].rows > levels[b].rows;
  });
  return order;
}

// (N, L, F) -> (L, N, F), so that each level task of the table gradient streams its
// own 0.5 MB of output gradient instead of striding through all of it.
void split_by_level(const float* src, float* dst, int64_t n, int64_t L, int64_t F) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t first = 0; first < n; first += kBatch)
    transpose_points<true>(src, dst, n, L, F, first, std::min(n, first + kBatch));
}

// grad_table may arrive uninitialised: each level zeroes its rows first. grad_by_level
// is (L, N, F).
template <int F>
void backward_table_impl(const std::vector<Level>& levels,
                         const float* x, const float* grad_by_level, float* grad_table,
                         int64_t n) {
  const int64_t L = static_cast<int64_t>(levels.size());
  const std::vector<int64_t> order = levels_largest_first(levels);
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
  for (int64_t k = 0; k < L; ++k) {
    const int64_t l = order[k];
    float* level_grad = grad_table + levels[l].offset * F;
    std::memset(level_grad, 0, sizeof(float) * F * levels[l].rows);
    const bool prefetch = worth_prefetching<F>(levels[l]);
    Batch b;
    for (int64_t first = 0; first < n; first += kBatch) {
      const int m = static_cast<int>(std::min<int64_t>(kBatch, n - first));
      locate(levels[l], x + 3 * first, m, b);
      const float* g = grad_by_level + (l * n + first) * F;
      // Sequential over points: a fixed order of additions per row, any thread count.
      for (int p = 0; p < m; ++p) {
        if (prefetch && p + kPrefetchAhead < m)
          prefetch_corners<F, true>(level_grad, b, p + kPrefetchAhead);
        const Features<F> gp = load_features<F>(g + p * F);
        for (int c = 0; c < 8; ++c) {
          float* row = level_grad + static_cast<int64_t>(b.row[c][p]) * F;
          store_features<F>(row, load_features<F>(row) + b.w[c][p] * gp);
        }
      }
    }
  }
}

// The table gradient (50 MB with the defaults) is rebuilt every step. Taking fresh
// pages from the kernel for it costs about 12,000 4 KB page faults (or a few dozen
// 2 MB ones with transparent huge pages), a third of the backward pass; zeroing a
// separate buffer first costs a full extra pass over it. Instead the mappings of the
// last freed gradients are kept as spares and handed out again, and each level task
// zeroes its own rows just before it scatters into them, so the zeroing is one
// streaming write into cache lines the scatter then finds hot. The level-major
// scratch of the forward and of the table gradient (8 MB each with the defaults)
// come from the same cache, for the same page-fault reason. A mapping is only
// reused after torch has freed the tensor that owned it, so no buffer is ever
// aliased. This is an allocator cache (like torch's own), hence the one piece of
// process-wide state in this file; it holds at most kMaxSpares freed mappings.
struct Mapping {
  void* base = nullptr;
  size_t bytes = 0;
};

class SpareMapping {
 public:
  // A mapping of exactly `bytes`: a spare of that size if there is one, else fresh.
  Mapping take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 0; i < spares_.size(); ++i) {
        if (spares_[i].bytes == bytes) {
          const Mapping m = spares_[i];
          spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
          return m;
        }
      }
    }
    return map(bytes);
  }

  // Keeps `m` as the newest spare, dropping the oldest beyond kMaxSpares.
  void give_back(Mapping m) {
    Mapping stale;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      spares_.push_back(m);
      if (spares_.size() > kMaxSpares) {
        stale = spares_.front();
        spares_.erase(spares_.begin());
      }
    }
    release(stale);
  }

 private:
  static Mapping map(size_t bytes) {
#ifdef __linux__
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return Mapping{};
    madvise(base, bytes, MADV_HUGEPAGE);  // advisory: fewer, larger page faults where THP is on
    return Mapping{base, bytes};
#else
    void* base = std::malloc(bytes);
    return Mapping{base, base ? bytes : 0};
#endif
  }

  static void release(Mapping m) {
    if (m.base == nullptr) return;
#ifdef __linux__
    munmap(m.base, m.bytes);
#else
    std::free(m.base);
#endif
  }

  // A model may hold a few grids of different sizes; each keeps a spare for its
  // gradient and one for its scratch.
  static constexpr size_t kMaxSpares = 8;
  std::mutex mutex_;
  std::vector<Mapping> spares_;
};

SpareMapping& spare_mappings() {
  static SpareMapping* spare = new SpareMapping();  // never destroyed: tensors may outlive exit
  return *spare;
}

// An uninitialised float32 tensor, from a spare mapping when it is large: the
// table gradient (backward_table_impl zeroes every level's rows before scattering
// into them) and the level-major scratch (every element is written before it is read).
torch::Tensor recycled_buffer(at::IntArrayRef sizes) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  const size_t bytes = sizeof(float) * static_cast<size_t>(std::max<int64_t>(numel, 1));
  if (bytes < (size_t(1) << 20)) return torch::empty(sizes, options);
  const Mapping m = spare_mappings().take(bytes);
  if (m.base == nullptr) return torch::empty(sizes, options);
  return torch::from_blob(m.base, sizes, [m](void*) { spare_mappings().give_back(m); },
                          options);
}

// Calls fn(std::integral_constant<int, F>) for the supported feature widths.
template <typename Fn>
void dispatch_features(int64_t F, Fn&& fn) {
  switch (F) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: TORCH_CHECK(false, "features per level must be 1, 2, 4 or 8, got ", F);
  }
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& table,
                  const torch::Tensor& offsets) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(),
              "hashgrid kernel runs on CPU tensors");
  TORCH_CHECK(x.dtype() == torch::kFloat32 && table.dtype() == torch::kFloat32,
              "x and table must be float32");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be (N, 3)");
  TORCH_CHECK(table.dim() == 2, "table must be (rows, F)");
  TORCH_CHECK(offsets.dtype() == torch::kInt64 && offsets.dim() == 1 && offsets.numel() >= 2,
              "offsets must be (L+1,) int64");
  const int64_t rows = offsets[-1].item<int64_t>();
  TORCH_CHECK(table.size(0) == rows, "table has ", table.size(0), " rows, the layout needs ", rows);
}

}  // namespace

// out (N, L*F) float32: the encoding of x (N, 3) float32 in [0, 1].
torch::Tensor hashgrid_forward(torch::Tensor x, torch::Tensor table, torch::Tensor resolutions,
                               torch::Tensor offsets, torch::Tensor hashed) {
  check_inputs(x, table, offsets);
  const auto levels = make_levels(resolutions, offsets, hashed);
  x = x.contiguous();
  table = table.contiguous();
  const int64_t n = x.size(0), L = static_cast<int64_t>(levels.size()), F = table.size(1);
  auto out = torch::empty({n, L * F}, x.options());
  auto scratch = recycled_buffer({L, n, F});
  dispatch_features(F, [&](auto f) {
    forward_impl<decltype(f)::value>(levels, x.data_ptr<float>(), table.data_ptr<float>(),
                                     scratch.data_ptr<float>(), out.data_ptr<float>(), n);
  });
  return out;
}

// Returns (grad_table (rows, F), grad_x (N, 3)); a gradient not asked for is an empty tensor.
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor grad_out, torch::Tensor x,
                                             torch::Tensor table, torch::Tensor resolutions,
                                             torch::Tensor offsets, torch::Tensor hashed,
                                             bool need_grad_table, bool need_grad_x) {
  check_inputs(x, table, offsets);
  const auto levels = make_levels(resolutions, offsets, hashed);
  x = x.contiguous();
  table = table.contiguous();
  grad_out = grad_out.to(torch::kFloat32).contiguous();
  const int64_t n = x.size(0), L = static_cast<int64_t>(levels.size()), F = table.size(1);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == n && grad_out.size(1) == L * F,
              "grad_out must be (N, L*F)");
  const auto none = torch::empty({0}, x.options());
  auto grad_table = need_grad_table ? recycled_buffer({table.size(0), F}) : none;
  auto grad_x = need_grad_x ? torch::zeros_like(x) : none;
  dispatch_features(F, [&](auto f) {
    constexpr int kF = decltype(f)::value;
    if (need_grad_table) {
      auto grad_by_level = recycled_buffer({L, n, F});
      split_by_level(grad_out.data_ptr<float>(), grad_by_level.data_ptr<float>(), n, L, F);
      backward_table_impl<kF>(levels, x.data_ptr<float>(),
                              grad_by_level.data_ptr<float>(), grad_table.data_ptr<float>(), n);
    }
    if (need_grad_x)
      backward_x_impl<kF>(levels, x.data_ptr<float>(), table.data_ptr<float>(),
                          grad_out.data_ptr<float>(), grad_x.data_ptr<float>(), n);
  });
  return {grad_table, grad_x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-resolution hash-grid encoding (Instant-NGP) on CPU, forward and backward.";
  m.def("forward", &hashgrid_forward, "Encode x (N,3) with the table (rows,F) -> (N, L*F)",
        py::arg("x"), py::arg("table"), py::arg("resolutions"), py::arg("offsets"),
        py::arg("hashed"), py::call_guard<py::gil_scoped_release>());  // see rasterize_bindings.cpp
  m.def("backward", &hashgrid_backward,
        "Gradients of the encoding: (grad_table (rows,F), grad_x (N,3)); empty when not asked",
        py::arg("grad_out"), py::arg("x"), py::arg("table"), py::arg("resolutions"),
        py::arg("offsets"), py::arg("hashed"), py::arg("need_grad_table"),
        py::arg("need_grad_x"), py::call_guard<py::gil_scoped_release>());
}
