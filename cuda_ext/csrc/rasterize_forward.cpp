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

    // Which of the chunk's `count` Gaussians (bit j) may reach a pixel of row r.
    uint64_t row_mask(const TileLocation& loc, int r, int count) const {
        const float px_lo = loc.x0 + 0.5f, px_hi = loc.x0 + loc.cols - 0.5f;
        uint64_t mask = 0;
        for (int first = 0; first < count; first += kVecWidth)
            mask |= uint64_t{gs.row_reach_mask(first, loc.pixel_y(r), px_lo, px_hi)} << first;
        return mask;
    }
};

// Blends the Gaussians of the current chunk in `mask` (bit j: slot begin + j) into row r;
// returns whether a pixel of the row is still alive. DC > 0: compile-time channel count
// (sums stay in registers).
template <int DC>
bool blend_row(TileState& st, const TileLocation& loc, int r, int64_t begin, uint64_t mask,
               int channels) {
    constexpr int kSums = DC > 0 ? DC + 1 : 1;
    const int D = DC > 0 ? DC : channels;
    const TileGaussians& gs = st.gs;
    const float py = loc.pixel_y(r);
    Vec px[kRowVectors], T[kRowVectors];
    VecInt last[kRowVectors];
    for (int v = 0; v < kRowVectors; ++v) {
        px[v] = row_pixel_x(loc.x0, v);
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
        const float dy = gs.my[j] - py;
        const float b_dy = gs.b[j] * dy, row_term = gs.half_c[j] * dy * dy;
        const VecInt slot = splat_int(static_cast<int32_t>(begin + j));
        const float* c = gs.color[j];
        for (int v = 0; v < kRowVectors; ++v) {
            const Vec sigma = gauss_power(gs.mx[j] - px[v], gs.half_a[j], b_dy, row_term);
            const Vec alpha = clamp_alpha(unclamped_alpha(sigma, gs.opacity[j]));
            const VecInt ok = passes(sigma, alpha);
            const Vec next_t = T[v] * (1.f - alpha);
            // A saturated pixel has T < 0, hence next_t < 0, so it never passes this again;
            // leaving the liveness test out shortens the loop-carried dependency chain.
            const VecInt use = ok & (next_t > kTransmittanceMin);
            const Vec w = use ? alpha * T[v] : Vec{};
            // ok & !use: the pixel saturates here (or had): set the (idempotent) sign bit.
            T[v] = use ? next_t : (ok ? negative_abs(T[v]) : T[v]);
            last[v] = use ? slot : last[v];
            Vec* a = acc + v * (D + 1);
            for (int k = 0; k < D; ++k) a[k] += w * c[k];
            a[D] += w * gs.depth[j];
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

template <int DC>
void draw_tile(const ImageGeometry& img, const Splats& sp, const TileLists& tl, int64_t tile,
               const float* backgrounds, TileState& st, const ForwardOutputs& out) {
    const TileLocation loc(img, tl, tile);
    const int D = DC > 0 ? DC : sp.channels;
    st.reset(loc, D);
    bool row_alive[kTileSize];
    for (int r = 0; r < kTileSize; ++r) row_alive[r] = r < loc.rows;
    bool tile_alive = true;
    for (int64_t begin = 0; begin < loc.n_slots && tile_alive; begin += kChunk) {
        const int count = static_cast<int>(std::min<int64_t>(kChunk, loc.n_slots - begin));
        st.gs.gather(sp, tl, loc, begin, count);
        tile_alive = false;
        for (int r = 0; r < loc.rows; ++r) {
            if (!row_alive[r]) continue;
            row_alive[r] = blend_row<DC>(st, loc, r, begin, st.row_mask(loc, r, count), D);
            tile_alive |= row_alive[r];
        }
    }
    const float* bg = backgrounds + static_cast<int64_t>(loc.camera) * D;
    for (int r = 0; r < loc.rows; ++r) {
        const Vec* acc = st.row_accum(r, D);
        for (int col = 0; col < loc.cols; ++col) {
            const int v = col / kVecWidth, lane = col % kVecWidth;
            const Vec* a = acc + v * (D + 1);
            const int64_t pix = loc.pixel(img, r, col);
            const float T = std::abs(st.T[r][v][lane]);
            for (int k = 0; k < D; ++k) out.colors[pix * D + k] = a[k][lane] + T * bg[k];
            out.alphas[pix] = 1.f - T;
            out.depths[pix] = a[D][lane];
            out.transmittance[pix] = T;
            out.last[pix] = st.last[r][v][lane];
        }
    }
}

template <int DC>
void draw_all_tiles(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                    const float* backgrounds, const ForwardOutputs& out, int threads) {
    const int64_t n_tiles = static_cast<int64_t>(img.cameras) * img.tiles_per_camera();
#pragma omp parallel num_threads(threads)
    {
        TileState st;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile)
            draw_tile<DC>(img, sp, tl, tile, backgrounds, st, out);
    }
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

}  // namespace avatar_raster
