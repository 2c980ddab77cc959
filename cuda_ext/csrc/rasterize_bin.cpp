// Tile binning: which 16 x 16 pixel tiles each projected Gaussian touches, and
// per-tile lists ordered front to back (see rasterize.h).
//
// A tile is listed only if the Gaussian's footprint ellipse (where alpha >= 1/255) meets
// the rectangle spanned by the tile's pixel centres, which is tighter than the usual
// bounding box and, because the per-pixel alpha test is the same ellipse, loses nothing.
// Instead of sorting every tile, the Gaussians of a camera are radix-sorted by depth once
// and dealt into their tiles in that order, which leaves every tile sorted.
#include <algorithm>
#include <cmath>
#include <vector>

#include "rasterize.h"

namespace avatar_raster {
namespace {

// Slack on the footprint so that float rounding never drops a pixel the compositor
// would have drawn (binning a tile too many only costs time).
constexpr float kSlackRelative = 1e-3f;
constexpr float kSlackAbsolute = 1e-3f;

// Footprint of one projected Gaussian: the ellipse 0.5 d^T Q d <= sigma_max around its
// centre, where alpha >= 1/255 (plus slack), in pixel coordinates.
struct Footprint {
    float mx, my;            // centre, px
    float A, B, C, det;      // conic Q = [[A, B], [B, C]] and its determinant
    float inv_a;             // 1 / A
    float sigma_max;
    float ex, ey;            // half-extents of the ellipse along x and y
    float y_left;            // height of the leftmost point (the rightmost is at -y_left)
    int tx0, tx1, ty0, ty1;  // inclusive tile range of its bounding box

    // Half-width and centre of the ellipse's chord at height y (relative to the centre).
    float half_width(float y) const {
        const float t = 2.f * sigma_max * A - det * y * y;
        return t > 0.f ? std::sqrt(t) * inv_a : 0.f;
    }
    float chord_centre(float y) const { return -B * y * inv_a; }
};

// Returns false when the Gaussian is culled or its box misses the image.
bool footprint(const ImageGeometry& img, const Splats& sp, int64_t cg, Footprint& f) {
    const float extent_x = sp.extents[2 * cg];
    if (!(extent_x > 0.f)) return false;
    f.mx = sp.means2d[2 * cg];
    f.my = sp.means2d[2 * cg + 1];
    f.A = sp.conics[3 * cg];
    f.B = sp.conics[3 * cg + 1];
    f.C = sp.conics[3 * cg + 2];
    f.det = f.A * f.C - f.B * f.B;
    if (!(f.det > 0.f) || !(f.A > 0.f)) return false;
    // The projection's x half-extent is extend * sqrt(cov_xx) with cov_xx = C / det, and the
    // footprint is sigma <= extend^2 / 2 (= log(255 opacity) below the 3.33 cap).
    const float sigma = 0.5f * extent_x * extent_x * f.det / f.C;
    f.sigma_max = sigma * (1.f + kSlackRelative) + kSlackAbsolute;
    f.inv_a = 1.f / f.A;
    const float scale = 2.f * f.sigma_max / f.det;
    f.ex = std::sqrt(scale * f.C);
    f.ey = std::sqrt(scale * f.A);
    f.y_left = f.B * f.ex / f.C;
    // Pixel i has its centre at i + 0.5.
    const int px0 = std::max(0, static_cast<int>(std::ceil(f.mx - f.ex - 0.5f)));
    const int px1 = std::min(img.width - 1, static_cast<int>(std::floor(f.mx + f.ex - 0.5f)));
    const int py0 = std::max(0, static_cast<int>(std::ceil(f.my - f.ey - 0.5f)));
    const int py1 = std::min(img.height - 1, static_cast<int>(std::floor(f.my + f.ey - 0.5f)));
    if (px0 > px1 || py0 > py1) return false;
    f.tx0 = px0 / kTileSize;
    f.tx1 = px1 / kTileSize;
    f.ty0 = py0 / kTileSize;
    f.ty1 = py1 / kTileSize;
    return true;
}

// Tiles [lo, hi] of tile row ty that the footprint meets (lo > hi: none). The ellipse cut
// to the row's band of pixel centres is convex, so it meets a tile iff its x-extent
// overlaps the tile's pixel centres; the extent's ends are at the band's edges or at the
// ellipse's leftmost / rightmost points when those lie inside the band.
void tiles_in_row(const ImageGeometry& img, const Footprint& f, int ty, int& lo, int& hi) {
    lo = 1;
    hi = 0;
    const float ya = std::max(ty * kTileSize + 0.5f - f.my, -f.ey);
    const float yb = std::min(std::min((ty + 1) * kTileSize, img.height) - 0.5f - f.my, f.ey);
    if (ya > yb) return;
    const float y_left = f.y_left;
    const float wa = f.half_width(ya), wb = f.half_width(yb);
    const float ca = f.chord_centre(ya), cb = f.chord_centre(yb);
    const float x_lo = (ya <= y_left && y_left <= yb) ? -f.ex : std::min(ca - wa, cb - wb);
    const float x_hi = (ya <= -y_left && -y_left <= yb) ? f.ex : std::max(ca + wa, cb + wb);
    const float left = f.mx + x_lo - kSlackAbsolute, right = f.mx + x_hi + kSlackAbsolute;
    // Tile tx has pixel centres from 16 tx + 0.5 to 16 tx + 15.5.
    constexpr float kInvTile = 1.f / kTileSize;
    lo = std::max(f.tx0, static_cast<int>(std::ceil((left - (kTileSize - 0.5f)) * kInvTile)));
    hi = std::min(f.tx1, static_cast<int>(std::floor((right - 0.5f) * kInvTile)));
}

// Stable LSD radix sort of `ids` (ascending on entry) by the 32-bit keys key_of(id):
// positive float depths sort like their bit patterns, and stability keeps equal depths
// in index order. The digit histograms are counted in one read, and a digit that is the
// same for every key (the exponent byte of depths within a factor of two) costs no pass.
template <typename KeyOf>
void radix_sort(std::vector<int32_t>& ids, std::vector<int32_t>& scratch, KeyOf key_of) {
    constexpr int kBits = 8, kBuckets = 1 << kBits, kPasses = 32 / kBits;
    std::vector<int64_t> count(kPasses * (kBuckets + 1), 0);
    for (const int32_t id : ids) {
        const uint32_t key = key_of(id);
        for (int p = 0; p < kPasses; ++p) ++count[p * (kBuckets + 1) + ((key >> (p * kBits)) & (kBuckets - 1)) + 1];
    }
    scratch.resize(ids.size());
    const int64_t n = static_cast<int64_t>(ids.size());
    for (int p = 0; p < kPasses; ++p) {
        int64_t* c = count.data() + p * (kBuckets + 1);
        if (std::find(c + 1, c + kBuckets + 1, n) != c + kBuckets + 1) continue;  // one digit value
        for (int b = 0; b < kBuckets; ++b) c[b + 1] += c[b];
        const int shift = p * kBits;
        for (const int32_t id : ids) scratch[c[(key_of(id) >> shift) & (kBuckets - 1)]++] = id;
        ids.swap(scratch);
    }
}

}  // namespace

void count_tile_hits(const ImageGeometry& img, const Splats& sp, TileHits* hits, int32_t* counts,
                     int threads) {
    const int64_t total = static_cast<int64_t>(img.cameras) * sp.gaussians;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t cg = 0; cg < total; ++cg) {
        Footprint f;
        TileHits& h = hits[cg];
        h = TileHits{};
        int32_t n = 0;
        if (footprint(img, sp, cg, f)) {
            const int width = f.tx1 - f.tx0 + 1;
            h.tx0 = static_cast<int16_t>(f.tx0);
            h.ty0 = static_cast<int16_t>(f.ty0);
            h.width = static_cast<int16_t>(width);
            h.height = static_cast<int16_t>(f.ty1 - f.ty0 + 1);
            h.cached = width * h.height <= 64;
            for (int ty = f.ty0, lo, hi; ty <= f.ty1; ++ty) {
                tiles_in_row(img, f, ty, lo, hi);
                for (int tx = lo; tx <= hi && h.cached; ++tx)
                    h.mask |= uint64_t{1} << ((ty - f.ty0) * width + tx - f.tx0);
                n += std::max(0, hi - lo + 1);
            }
        }
        counts[cg] = n;
    }
}

void fill_tile_hits(const ImageGeometry& img, const Splats& sp, const TileHits* hits,
                    const int64_t* cg_offsets, int32_t* isect_tile, int threads) {
    const int64_t total = static_cast<int64_t>(img.cameras) * sp.gaussians;
    const int tiles = img.tiles_per_camera(), tiles_x = img.tiles_x();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t cg = 0; cg < total; ++cg) {
        if (cg_offsets[cg] == cg_offsets[cg + 1]) continue;
        const TileHits& h = hits[cg];
        const int camera_base = static_cast<int>(cg / sp.gaussians) * tiles;
        int64_t e = cg_offsets[cg];
        if (h.cached) {
            for (uint64_t m = h.mask; m != 0; m &= m - 1) {  // set bits in increasing order
                const int bit = __builtin_ctzll(m);
                isect_tile[e++] = camera_base + (h.ty0 + bit / h.width) * tiles_x + h.tx0 + bit % h.width;
            }
            continue;
        }
        Footprint f;  // a large footprint: recompute its rows
        footprint(img, sp, cg, f);
        for (int ty = f.ty0, lo, hi; ty <= f.ty1; ++ty) {
            tiles_in_row(img, f, ty, lo, hi);
            for (int tx = lo; tx <= hi; ++tx) isect_tile[e++] = camera_base + ty * tiles_x + tx;
        }
    }
}

void sort_tile_hits(const ImageGeometry& img, const Splats& sp, int64_t n_isects,
                    const int64_t* cg_offsets, const int32_t* isect_tile, int64_t* tile_offsets,
                    int32_t* tile_gauss, int32_t* slot_isect, int threads) {
    const int tiles = img.tiles_per_camera();
    const int64_t n_tiles = static_cast<int64_t>(img.cameras) * tiles;
    const int N = sp.gaussians;
    // Each camera's depth order and its radix-sort scratch (O(C N) in all) are kept between
    // calls, per calling thread like the bindings' scratch: fresh buffers every call cost
    // more in page faults than the sort itself. References, so that the parallel regions
    // below share the calling thread's buffers.
    thread_local std::vector<std::vector<int32_t>> order_buffers, scratch_buffers;
    auto& order = order_buffers;
    auto& scratch = scratch_buffers;
    order.resize(img.cameras);
    scratch.resize(img.cameras);
    for (auto& o : order) o.clear();
    // Task 0 counts the intersections per tile, task 1 + c sorts camera c front to back
    // (the Gaussians it touches); the tasks are independent so they run side by side.
#pragma omp parallel for num_threads(std::min(threads, img.cameras + 1)) schedule(dynamic, 1)
    for (int task = 0; task <= img.cameras; ++task) {
        if (task == 0) {
            std::fill(tile_offsets, tile_offsets + n_tiles + 1, 0);
            for (int64_t e = 0; e < n_isects; ++e) ++tile_offsets[isect_tile[e] + 1];
            for (int64_t t = 0; t < n_tiles; ++t) tile_offsets[t + 1] += tile_offsets[t];
            continue;
        }
        const int c = task - 1;
        const int64_t base = static_cast<int64_t>(c) * N;
        for (int32_t g = 0; g < N; ++g)
            if (cg_offsets[base + g + 1] > cg_offsets[base + g]) order[c].push_back(g);
        radix_sort(order[c], scratch[c], [&](int32_t g) {
            uint32_t bits;
            std::memcpy(&bits, sp.depths + base + g, sizeof(bits));
            return bits;
        });
    }
    // Deal the Gaussians into their tiles in that order. Each task owns a band of tiles of
    // one camera (every task reads the whole order, writes only its own tiles), so the
    // result does not depend on how the bands are shared among threads.
    const int bands = std::max(1, std::min(tiles, threads));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int task = 0; task < img.cameras * bands; ++task) {
        const int c = task / bands, band = task % bands;
        const int64_t first = static_cast<int64_t>(c) * tiles;
        const int64_t lo = first + static_cast<int64_t>(tiles) * band / bands;
        const int64_t hi = first + static_cast<int64_t>(tiles) * (band + 1) / bands;
        std::vector<int64_t> cursor(tile_offsets + lo, tile_offsets + hi);
        const int64_t base = static_cast<int64_t>(c) * N;
        for (const int32_t g : order[c])
            for (int64_t e = cg_offsets[base + g]; e < cg_offsets[base + g + 1]; ++e) {
                const int32_t t = isect_tile[e];
                if (t < lo || t >= hi) continue;
                const int64_t slot = cursor[t - lo]++;
                tile_gauss[slot] = g;
                slot_isect[slot] = static_cast<int32_t>(e);
            }
    }
}

}  // namespace avatar_raster
