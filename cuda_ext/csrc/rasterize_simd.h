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

inline Vec splat(float v) { return Vec{} + v; }
inline VecInt splat_int(int32_t v) { return VecInt{} + v; }

// exp(x) for x <= 0 (relative error below 3e-7 on [-87, 0], exp(-87) below that). For
// x > 0 the result is finite garbage-free only up to x ~ 88; callers discard those lanes.
inline Vec vec_exp(Vec x) {
    x = x < -87.0f ? splat(-87.0f) : x;
    // n = round(x / ln2) by adding and removing 1.5 * 2^23 (no rounding instruction).
    constexpr float kRoundMagic = 12582912.0f;
    const Vec n = (x * 1.44269504088896341f + kRoundMagic) - kRoundMagic;
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
    const VecInt bits = (__builtin_convertvector(n, VecInt) + 127) << 23;
    return p * reinterpret_cast<const Vec&>(bits);
}

// The Gaussian exponent sigma = 0.5 d^T Q d at pixels of a row, d = mean - pixel, with dx
// per lane and the row constants half_a = Q00/2, b_dy = Q01 dy, row_term = Q11/2 dy^2.
inline Vec gauss_power(Vec dx, float half_a, float b_dy, float row_term) {
    return (half_a * dx) * dx + (b_dy * dx + row_term);
}

// opacity * exp(-sigma): the alpha before the kAlphaMax clamp.
inline Vec unclamped_alpha(Vec sigma, float opacity) { return opacity * vec_exp(-sigma); }

inline Vec clamp_alpha(Vec oe) { return oe < kAlphaMax ? oe : splat(kAlphaMax); }

// Whether a pixel draws the Gaussian at all (besides being alive / in range).
inline VecInt passes(Vec sigma, Vec alpha) { return (sigma >= 0.f) & (alpha >= kAlphaThreshold); }

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

inline bool any_lane(VecInt m) {
    int32_t acc = 0;
    for (int i = 0; i < kVecWidth; ++i) acc |= m[i];
    return acc != 0;
}

}  // namespace avatar_raster
