// Front-to-back alpha compositing per tile (see rasterize.h for the semantics).
//
// Tiles are independent and handed out dynamically to threads. Inside a tile each row of
// 16 pixels is a few SIMD vectors whose state (transmittance, liveness, last contributor,
// colour sums) stays in registers while the row walks the Gaussians reaching it, front to
// back, stopping as soon as all its pixels are saturated. Gaussians are gathered in
// chunks so a tile whose rows are all saturated stops reading its list, and each row only
// visits those of the chunk whose footprint ellipse reaches one of its pixel centres
// (tested exactly, with slack, 16 Gaussians at a time; about 15% of the (row, Gaussian)
// pairs of the tile's bounding rows miss the row's 16 pixels).
#include <algorithm>
#include <cmath>
#include <vector>

#include "rasterize.h"
#include "rasterize_simd.h"
#include "rasterize_tile.h"

namespace avatar_raster {
namespace {

constexpr int kChunk = 64;              // Gaussians gathered at a time
static_assert(kChunk <= 64 && kChunk % kVecWidth == 0, "a row's chunk mask is one uint64_t");
// Gaussians a row blends between liveness checks; a check is a lane reduction, and 16
// measured faster than 2, 4 or 8.
constexpr int kAliveCheckInterval = 16;

struct ForwardOutputs {
    float* colors;         // (C, H, W, D)
    float* alphas;         // (C, H, W)
    float* depths;         // (C, H, W)
    float* transmittance;  // (C, H, W)
    int32_t* last;         // (C, H, W)
};

// Per-thread state of the tile being drawn, kept between chunks: [row][vector of the row].
// A saturated pixel keeps its final transmittance negated, so T > 0 means "still alive"
// without a separate mask in the loop-carried dependency chain.
struct TileState {
    Vec T[kTileSize][kRowVectors];
    VecInt last[kTileSize][kRowVectors];
    std::vector<Vec> accum;  // (kTileSize, kRowVectors, D + 1): colour channels, then depth
    TileGaussians gs;
    // Per Gaussian of the chunk and vector of a row: dx = mean x - pixel x, and -Q00/2 dx.
    Vec dx[kChunk][kRowVectors], neg_half_a_dx[kChunk][kRowVectors];
    // Per Gaussian of the chunk, for the current row: -Q01 dy and -Q11/2 dy^2.
    float neg_b_dy[kChunk], neg_row_term[kChunk];

    // Fills dx and neg_half_a_dx for the `count` gathered Gaussians.
    void prepare_columns(const TileLocation& loc, int count) {
        for (int v = 0; v < kRowVectors; ++v) {
            const Vec px = row_pixel_x(loc.x0, v);
            for (int j = 0; j < count; ++j) {
                dx[j][v] = gs.mx[j] - px;
                neg_half_a_dx[j][v] = -(gs.half_a[j] * dx[j][v]);
            }
        }
    }

    void reset(const TileLocation& loc, int channels) {
        for (int r = 0; r < kTileSize; ++r)
            for (int v = 0; v < kRowVectors; ++v) {
                // Pixels outside the image start saturated (-1: no live pixel).
                T[r][v] = (r < loc.rows ? row_columns_below(loc.cols, v) : VecInt{}) ? splat(1.f) : splat(-1.f);
                last[r][v] = splat_int(-1);
            }
        accum.assign(static_cast<size_t>(kTileSize) * kRowVectors * (channels + 1), Vec{});
    }

    Vec* row_accum(int r, int channels) {
        return accum.data() + static_cast<size_t>(r) * kRowVectors * (channels + 1);
    }

    // Which of the chunk's `count` Gaussians (bit j) may reach a pixel of row r; fills
    // neg_b_dy and neg_row_term for the row.
    uint64_t prepare_row(const TileLocation& loc, int r, int count) {
        const float px_lo = loc.x0 + 0.5f, px_hi = loc.x0 + loc.cols - 0.5f;
        uint64_t mask = 0;
        for (int first = 0; first < count; first += kVecWidth)
            mask |= uint64_t{gs.row_reach_mask(first, loc.pixel_y(r), px_lo, px_hi, neg_b_dy, neg_row_term)} << first;
        return mask;
    }
};

// Blends the Gaussians of the current chunk in `mask` (bit j: slot begin + j) into row r;
// returns whether a pixel of the row is still alive. DC > 0: compile-time channel count
// (sums stay in registers). kFull: also the depth sums and last contributors the backward
// needs (a picture to look at needs neither).
template <int DC, bool kFull>
bool blend_row(TileState& st, const TileLocation& loc, int r, int64_t begin, uint64_t mask,
               int channels) {
    constexpr int kSums = DC > 0 ? DC + 1 : 1;
    const int D = DC > 0 ? DC : channels;
    const TileGaussians& gs = st.gs;
    Vec T[kRowVectors];
    VecInt last[kRowVectors];
    for (int v = 0; v < kRowVectors; ++v) {
        T[v] = st.T[r][v];
        last[v] = st.last[r][v];
    }
    Vec* stored = st.row_accum(r, D);  // [v * (D + 1) + k]
    Vec local[kRowVectors * kSums];
    Vec* acc = DC > 0 ? local : stored;
    if (DC > 0)
        for (int i = 0; i < kRowVectors * (D + 1); ++i) local[i] = stored[i];
    int since_check = 0;
    for (; mask != 0; mask &= mask - 1) {  // set bits in increasing order: front to back
        const int j = __builtin_ctzll(mask);
        const float neg_b_dy = st.neg_b_dy[j], neg_row_term = st.neg_row_term[j];
        const VecInt slot = splat_int(static_cast<int32_t>(begin + j));
        const float* c = gs.color[j];
        for (int v = 0; v < kRowVectors; ++v) {
            const Vec neg_sigma = neg_gauss_power(st.dx[j][v], st.neg_half_a_dx[j][v], neg_b_dy, neg_row_term);
            const Vec alpha = clamp_alpha(gs.opacity[j] * vec_exp(neg_sigma));
            const VecInt ok = passes_negated(neg_sigma, alpha);
            const Vec next_t = T[v] * (1.f - alpha);
            // A saturated pixel has T < 0, hence next_t < 0, so it never passes this again;
            // leaving the liveness test out shortens the loop-carried dependency chain.
            const VecInt use = ok & (next_t > kTransmittanceMin);
            const Vec w = use ? alpha * T[v] : Vec{};
            // ok & !use: the pixel saturates here (or had): set the (idempotent) sign bit.
            T[v] = use ? next_t : (ok ? negative_abs(T[v]) : T[v]);
            if constexpr (kFull) last[v] = use ? slot : last[v];
            Vec* a = acc + v * (D + 1);
            for (int k = 0; k < D; ++k) a[k] += w * c[k];
            if constexpr (kFull) a[D] += w * gs.depth[j];
        }
        if (++since_check == kAliveCheckInterval) {
            since_check = 0;
            VecInt any = T[0] > 0.f;
            for (int v = 1; v < kRowVectors; ++v) any |= T[v] > 0.f;
            if (!any_lane(any)) break;
        }
    }
    VecInt any{};
    for (int v = 0; v < kRowVectors; ++v) {
        st.T[r][v] = T[v];
        st.last[r][v] = last[v];
        any |= T[v] > 0.f;
    }
    if (DC > 0)
        for (int i = 0; i < kRowVectors * (D + 1); ++i) stored[i] = local[i];
    return any_lane(any);
}

// Writes row r of a finished tile: whole vectors where the row is complete, the same
// values lane by lane otherwise.
template <int DC>
void write_row(const ImageGeometry& img, const TileLocation& loc, int r, TileState& st,
               const float* bg, int D, const ForwardOutputs& out) {
    const Vec* acc = st.row_accum(r, D);
    const int64_t row_start = loc.pixel(img, r, 0);
    for (int v = 0; v < kRowVectors; ++v) {
        const Vec* a = acc + v * (D + 1);
        const Vec T = vec_max(st.T[r][v], -st.T[r][v]);  // |T|
        const int first = v * kVecWidth, n = std::min(kVecWidth, loc.cols - first);
        if (n <= 0) break;
        const int64_t pix = row_start + first;
        Vec colour[DC > 0 ? DC : 1];
        for (int k = 0; k < D; ++k) {
            const Vec c = a[k] + T * bg[k];
            if (DC > 0) {
                colour[k] = c;
            } else {
                for (int i = 0; i < n; ++i) out.colors[(pix + i) * D + k] = c[i];
            }
        }
        if (DC > 0)
            for (int i = 0; i < n; ++i)
                for (int k = 0; k < DC; ++k) out.colors[(pix + i) * DC + k] = colour[k][i];
        const Vec alpha = 1.f - T;
        if (n == kVecWidth) {
            std::memcpy(out.alphas + pix, &alpha, sizeof(Vec));
            std::memcpy(out.depths + pix, &a[D], sizeof(Vec));
            std::memcpy(out.transmittance + pix, &T, sizeof(Vec));
            std::memcpy(out.last + pix, &st.last[r][v], sizeof(VecInt));
            continue;
        }
        for (int i = 0; i < n; ++i) {
            out.alphas[pix + i] = alpha[i];
            out.depths[pix + i] = a[D][i];
            out.transmittance[pix + i] = T[i];
            out.last[pix + i] = st.last[r][v][i];
        }
    }
}

// Writes row r of a finished tile as 8-bit RGB over a background image (C,H,W,3) in [0, 1],
// and its alpha: the picture a viewer shows, without the float image and the passes over it.
void write_picture_row(const ImageGeometry& img, const TileLocation& loc, int r, TileState& st,
                       const float* plate, uint8_t* out_rgb, float* out_alpha) {
    const Vec* acc = st.row_accum(r, 3);
    const int64_t row_start = loc.pixel(img, r, 0);
    for (int v = 0; v < kRowVectors; ++v) {
        const Vec* a = acc + v * 4;
        const Vec T = vec_max(st.T[r][v], -st.T[r][v]);  // |T|
        const int first = v * kVecWidth, n = std::min(kVecWidth, loc.cols - first);
        if (n <= 0) break;
        const int64_t pix = row_start + first;
        for (int i = 0; i < n; ++i) {
            const float* bg = plate + (pix + i) * 3;
            uint8_t* o = out_rgb + (pix + i) * 3;
            for (int k = 0; k < 3; ++k) {
                const float c = (a[k][i] + T[i] * bg[k]) * 255.f + 0.5f;
                o[k] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, c)));
            }
            out_alpha[pix + i] = 1.f - T[i];
        }
    }
}

// Blends every row of one tile, then hands each finished row to write(loc, r, st).
template <int DC, bool kFull, class Write>
void draw_tile(const ImageGeometry& img, const Splats& sp, const TileLists& tl, int64_t tile,
               TileState& st, const Write& write) {
    const TileLocation loc(img, tl, tile);
    const int D = DC > 0 ? DC : sp.channels;
    st.reset(loc, D);
    bool row_alive[kTileSize];
    for (int r = 0; r < kTileSize; ++r) row_alive[r] = r < loc.rows;
    bool tile_alive = true;
    for (int64_t begin = 0; begin < loc.n_slots && tile_alive; begin += kChunk) {
        const int count = static_cast<int>(std::min<int64_t>(kChunk, loc.n_slots - begin));
        st.gs.gather(sp, tl, loc, begin, count, /*with_reach=*/true, /*with_rows=*/false);
        st.prepare_columns(loc, count);
        tile_alive = false;
        for (int r = 0; r < loc.rows; ++r) {
            if (!row_alive[r]) continue;
            row_alive[r] = blend_row<DC, kFull>(st, loc, r, begin, st.prepare_row(loc, r, count), D);
            tile_alive |= row_alive[r];
        }
    }
    for (int r = 0; r < loc.rows; ++r) write(loc, r, st);
}

template <int DC, bool kFull, class Write>
void for_all_tiles(const ImageGeometry& img, const Splats& sp, const TileLists& tl, int threads,
                   const Write& write) {
    const int64_t n_tiles = static_cast<int64_t>(img.cameras) * img.tiles_per_camera();
#pragma omp parallel num_threads(threads)
    {
        TileState st;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile)
            draw_tile<DC, kFull>(img, sp, tl, tile, st, write);
    }
}

template <int DC>
void draw_all_tiles(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                    const float* backgrounds, const ForwardOutputs& out, int threads) {
    const int D = DC > 0 ? DC : sp.channels;
    for_all_tiles<DC, true>(img, sp, tl, threads, [&](const TileLocation& loc, int r, TileState& st) {
        write_row<DC>(img, loc, r, st, backgrounds + static_cast<int64_t>(loc.camera) * D, D, out);
    });
}

}  // namespace

void composite_forward(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                       const float* backgrounds, float* out_colors, float* out_alphas,
                       float* out_depths, float* out_transmittance, int32_t* out_last,
                       int threads) {
    const ForwardOutputs out{out_colors, out_alphas, out_depths, out_transmittance, out_last};
    // Compile-time channel counts for the common cases; any other count works too.
    if (sp.channels == 3)
        draw_all_tiles<3>(img, sp, tl, backgrounds, out, threads);
    else if (sp.channels == 1)
        draw_all_tiles<1>(img, sp, tl, backgrounds, out, threads);
    else
        draw_all_tiles<0>(img, sp, tl, backgrounds, out, threads);
}

void composite_picture(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                       const float* plate, uint8_t* out_rgb, float* out_alpha, int threads) {
    for_all_tiles<3, false>(img, sp, tl, threads, [&](const TileLocation& loc, int r, TileState& st) {
        write_picture_row(img, loc, r, st, plate, out_rgb, out_alpha);
    });
}

}  // namespace avatar_raster
