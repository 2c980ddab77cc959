// SIMD vectors for the compositing loops: a 16-pixel tile row is kRowVectors vectors of
// the machine's native width (1 x AVX-512, 2 x AVX2, 4 x SSE/NEON).
//
// GCC/Clang vector extensions keep the per-row state in registers across Gaussians, which
// plain loops with `#pragma omp simd` did not (measured 1.6x slower). The width must be
// native: 16-lane vectors on an AVX2-only machine were lowered 5x slower.
// Every function the forward and the backward both use lives here, so the two passes
// compute bit-identical alphas and agree on which Gaussians touched which pixels.
#pragma once

#include <cstdint>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "rasterize.h"

namespace avatar_raster {

#if defined(__AVX512F__)
constexpr int kVecWidth = 16;
#elif defined(__AVX__)
constexpr int kVecWidth = 8;
#else
constexpr int kVecWidth = 4;
#endif
constexpr int kRowVectors = kTileSize / kVecWidth;
static_assert(kRowVectors * kVecWidth == kTileSize, "a tile row is whole vectors");

typedef float Vec __attribute__((vector_size(kVecWidth * sizeof(float))));
typedef int32_t VecInt __attribute__((vector_size(kVecWidth * sizeof(int32_t))));
typedef uint32_t VecUInt __attribute__((vector_size(kVecWidth * sizeof(uint32_t))));

inline Vec splat(float v) { return Vec{} + v; }
inline VecInt splat_int(int32_t v) { return VecInt{} + v; }

// min(a, b) and max(a, b) as one instruction where there is one (the ternaries compile
// to a compare and a blend); for non-NaN inputs all forms give the same bits.
inline Vec vec_min(Vec a, Vec b) {
#if defined(__AVX512F__)
    return reinterpret_cast<Vec>(_mm512_min_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
    return reinterpret_cast<Vec>(_mm256_min_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#else
    return a < b ? a : b;
#endif
}

inline Vec vec_max(Vec a, Vec b) {
#if defined(__AVX512F__)
    return reinterpret_cast<Vec>(_mm512_max_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
    return reinterpret_cast<Vec>(_mm256_max_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#else
    return a > b ? a : b;
#endif
}

// -|x| (sets the sign bit).
inline Vec negative_abs(Vec x) {
    const VecInt bits = reinterpret_cast<const VecInt&>(x) | splat_int(INT32_MIN);
    return reinterpret_cast<const Vec&>(bits);
}

// exp(x) for x <= 0 (relative error below 3e-7 on [-87, 0], exp(-87) below that). For
// x > 0 the result is finite garbage-free only up to x ~ 88; callers discard those lanes.
inline Vec vec_exp(Vec x) {
    x = vec_max(x, splat(-87.0f));
    // n = round(x / ln2) by adding and removing 1.5 * 2^23 (no rounding instruction).
    constexpr float kRoundMagic = 12582912.0f;
    const Vec shifted = x * 1.44269504088896341f + kRoundMagic;  // kRoundMagic + n, exactly
    const Vec n = shifted - kRoundMagic;
    Vec r = x - n * 0.693145751953125f;  // ln2 in a high and a low part (Cody-Waite)
    r = r - n * 1.42860682030941723e-06f;
    // exp(r) on |r| <= ln2 / 2: degree-5 polynomial fitted for minimal relative error
    // (1.7e-7 in float32), p(0) = 1.
    Vec p = splat(0.0082903f);
    p = p * r + 0.04189794f;
    p = p * r + 0.16667636f;
    p = p * r + 0.4999915f;
    p = p * r + 0.9999997f;
    p = p * r + 1.0f;
    // 2^n from the bits of `shifted` instead of converting n to int (one instruction fewer
    // in the compositing loops): they are those of kRoundMagic, 0x4B400000, plus n, and the
    // magic's bits leave the 32-bit word when shifted up by 23, so (bits + 127) << 23 is
    // (n + 127) << 23, the same bits as before for all |n| < 2^22. Unsigned: the shift wraps.
    const VecUInt bits = (reinterpret_cast<const VecUInt&>(shifted) + 127u) << 23;
    return p * reinterpret_cast<const Vec&>(bits);
}

// The Gaussian exponent sigma = 0.5 d^T Q d at pixels of a row, d = mean - pixel, with dx
// per lane and the row constants half_a = Q00/2, b_dy = Q01 dy, row_term = Q11/2 dy^2.
inline Vec gauss_power(Vec dx, float half_a, float b_dy, float row_term) {
    return (half_a * dx) * dx + (b_dy * dx + row_term);
}

// The forward's form of gauss_power: -sigma from the negated constants (-half_a dx,
// -b_dy, -row_term). Negation is exact and rounding symmetric, so this is -sigma bit for
// bit, and opacity * vec_exp of it the same alpha as unclamped_alpha.
inline Vec neg_gauss_power(Vec dx, Vec neg_half_a_dx, float neg_b_dy, float neg_row_term) {
    return neg_half_a_dx * dx + (neg_b_dy * dx + neg_row_term);
}

// opacity * exp(-sigma): the alpha before the kAlphaMax clamp.
inline Vec unclamped_alpha(Vec sigma, float opacity) { return opacity * vec_exp(-sigma); }

inline Vec clamp_alpha(Vec oe) { return vec_min(oe, splat(kAlphaMax)); }

// Whether a pixel draws the Gaussian at all (besides being alive / in range).
inline VecInt passes(Vec sigma, Vec alpha) { return (sigma >= 0.f) & (alpha >= kAlphaThreshold); }
inline VecInt passes_negated(Vec neg_sigma, Vec alpha) {
    return (neg_sigma <= 0.f) & (alpha >= kAlphaThreshold);
}

// Pixel centres x of the lanes of vector v of a row starting at pixel x0.
inline Vec row_pixel_x(int x0, int v) {
    Vec px;
    for (int i = 0; i < kVecWidth; ++i) px[i] = x0 + v * kVecWidth + i + 0.5f;
    return px;
}

// All-ones lanes for the columns < cols of vector v of a row.
inline VecInt row_columns_below(int cols, int v) {
    VecInt m;
    for (int i = 0; i < kVecWidth; ++i) m[i] = v * kVecWidth + i < cols ? -1 : 0;
    return m;
}

inline float lane_sum(Vec v) {  // fixed order, so results do not depend on anything else
    float s = 0.f;
    for (int i = 0; i < kVecWidth; ++i) s += v[i];
    return s;
}

// Bit i set iff lane i of m is set.
inline uint32_t lane_bits(VecInt m) {
#if defined(__AVX512F__)
    return _mm512_cmpneq_epi32_mask(reinterpret_cast<__m512i>(m), _mm512_setzero_si512());
#elif defined(__AVX__)
    return static_cast<uint32_t>(_mm256_movemask_ps(reinterpret_cast<__m256>(m)));
#else
    uint32_t bits = 0;
    for (int i = 0; i < kVecWidth; ++i) bits |= (m[i] != 0 ? 1u : 0u) << i;
    return bits;
#endif
}

inline bool any_lane(VecInt m) {
    // One test instruction where there is one; GCC turned the loop below into a chain of
    // about 40 lane extracts, run every kAliveCheckInterval Gaussians of the forward.
#if defined(__AVX512F__)
    return _mm512_test_epi32_mask(reinterpret_cast<__m512i>(m), reinterpret_cast<__m512i>(m)) != 0;
#elif defined(__AVX2__)
    return !_mm256_testz_si256(reinterpret_cast<__m256i>(m), reinterpret_cast<__m256i>(m));
#endif
    int32_t acc = 0;
    for (int i = 0; i < kVecWidth; ++i) acc |= m[i];
    return acc != 0;
}

}  // namespace avatar_raster
