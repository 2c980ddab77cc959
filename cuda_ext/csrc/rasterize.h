// CPU 3D Gaussian rasteriser: shared types, constants and the raw-pointer kernel API.
//
// The kernels here know nothing about torch: they read and write plain float /
// int32 arrays that the bindings (rasterize_bindings.cpp) allocate as tensors.
// Keeping torch out of these translation units makes them compile in seconds.
//
// Semantics (those of avatar/render/reference.py; gsplat 1.5 "classic" differs only in
// clamping alpha at 0.999):
//  - projection: EWA splatting with the low-pass dilation eps2d added to the 2D
//    covariance diagonal; Gaussians with z <= near or z >= far, a non positive
//    2D determinant, opacity < 1/255 or a footprint outside the image are culled.
//  - a Gaussian touches a pixel iff alpha = min(0.99, o * exp(-sigma)) >= 1/255
//    (and sigma >= 0); its footprint is the ellipse where that holds, whose
//    half-extents per axis are `extents` (the opacity-aware bound of gsplat 1.5).
//    Tiles are only an acceleration structure: the image does not depend on them.
//  - compositing front to back in (depth, index) order; a pixel stops before the
//    Gaussian that would bring its transmittance T to <= 1e-4.
#pragma once

#include <cstdint>
#include <cstring>

namespace avatar_raster {

constexpr float kAlphaThreshold = 1.0f / 255.0f;  // alphas below this are skipped
constexpr float kAlphaMax = 0.99f;                 // keeps 1 - alpha away from 0 for the backward
constexpr float kTransmittanceMin = 1e-4f;         // a pixel is done before T falls to this
constexpr float kExtendMax = 3.33f;                // cap of the footprint, in standard deviations

// Number of per-intersection gradient values before the D colour gradients:
// d/d(mean2d x, y), d/d(conic A, B, C), d/d(opacity), d/d(depth).
constexpr int kRecordHead = 7;

// Tiles are kTileSize x kTileSize pixels; a tile row is whole SIMD vectors (rasterize_simd.h).
constexpr int kTileSize = 16;

struct ImageGeometry {
    int cameras;  // C
    int width;    // W, pixels
    int height;   // H, pixels
    int tiles_x() const { return (width + kTileSize - 1) / kTileSize; }
    int tiles_y() const { return (height + kTileSize - 1) / kTileSize; }
    int tiles_per_camera() const { return tiles_x() * tiles_y(); }
};

// ---------------------------------------------------------------- projection
struct ProjectionSettings {
    int cameras, gaussians, width, height;
    float eps2d, near_plane, far_plane;
};

// means (N,3), quats (N,4) wxyz, scales (N,3), opacities (N), viewmats (C,4,4), Ks (C,3,3).
// Writes means2d (C,N,2) px, conics (C,N,3) [Q00, Q01, Q11] 1/px^2, depths (C,N) metres,
// extents (C,N,2) px, radii (C,N) int32 px; culled entries are all zero.
void project_forward(const ProjectionSettings& s, const float* means, const float* quats,
                     const float* scales, const float* opacities, const float* viewmats,
                     const float* Ks, float* means2d, float* conics, float* depths,
                     float* extents, int32_t* radii, int threads);

// Given gradients w.r.t. means2d, conics, depths (C,N,...), accumulates over cameras
// (in camera order) into v_means (N,3), v_quats (N,4), v_scales (N,3) (overwritten).
void project_backward(const ProjectionSettings& s, const float* means, const float* quats,
                      const float* scales, const float* viewmats, const float* Ks,
                      const int32_t* radii, const float* v_means2d, const float* v_conics,
                      const float* v_depths, float* v_means, float* v_quats, float* v_scales,
                      int threads);

// ------------------------------------------------------------------- binning
// Projected Gaussians of all cameras, indexed by cg = camera * N + gaussian.
struct Splats {
    int gaussians;             // N
    int channels;              // D
    const float* means2d;      // (C, N, 2)
    const float* conics;       // (C, N, 3)
    const float* depths;       // (C, N)
    const float* extents;      // (C, N, 2), zero when culled
    const float* opacities;    // (N)
    const float* colors;       // (C, N, D), or (N, D) when color_camera_stride == 0
    int64_t color_camera_stride;
};

// Tiles hit by one projected Gaussian: its tile bounding box and, when the box has at
// most 64 tiles, which of them its footprint meets (bit (ty - ty0) * width + tx - tx0).
struct TileHits {
    uint64_t mask = 0;
    int16_t tx0 = 0, ty0 = 0, width = 0, height = 0;
    bool cached = false;
};

// Number of tiles the footprint of each projected Gaussian touches: counts (C*N), and the
// hits themselves (C*N) for fill_tile_hits.
void count_tile_hits(const ImageGeometry& img, const Splats& sp, TileHits* hits, int32_t* counts,
                     int threads);

// Fills the tiles of every projected Gaussian (row-major tile order) into isect_tile,
// starting at cg_offsets[cg] (the exclusive scan of counts).
void fill_tile_hits(const ImageGeometry& img, const Splats& sp, const TileHits* hits,
                    const int64_t* cg_offsets, int32_t* isect_tile, int threads);

// Groups intersections by tile, each tile ordered by (depth, gaussian index):
// tile_offsets (C*T + 1), tile_gauss (n) gaussian index (in its camera) per slot,
// slot_isect (n) the intersection index (position in cg-major order) of each slot.
void sort_tile_hits(const ImageGeometry& img, const Splats& sp, int64_t n_isects,
                    const int64_t* cg_offsets, const int32_t* isect_tile, int64_t* tile_offsets,
                    int32_t* tile_gauss, int32_t* slot_isect, int threads);

// --------------------------------------------------------------- compositing
struct TileLists {
    const int64_t* tile_offsets;  // (C*T + 1)
    const int32_t* tile_gauss;    // (n_isects) gaussian index (in its camera) per slot
    const int32_t* slot_isect;    // (n_isects) intersection index per slot
};

// Outputs per camera and pixel: colors (C,H,W,D), alphas (C,H,W), depths (C,H,W) (alpha
// weighted camera z), final transmittance (C,H,W) and last contributing slot (C,H,W),
// -1 for none, relative to the tile's first slot.
void composite_forward(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                       const float* backgrounds, float* out_colors, float* out_alphas,
                       float* out_depths, float* out_transmittance, int32_t* out_last,
                       int threads);

// The forward for looking only (no backward): RGB (D = 3) composited over the background
// image plate (C,H,W,3) in [0, 1], written as 8-bit out_rgb (C,H,W,3) (rounded, clamped),
// and the alphas (C,H,W); the same colours as composite_forward over that image.
void composite_picture(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                       const float* plate, uint8_t* out_rgb, float* out_alpha, int threads);

// Per-intersection gradient records (n_isects, kRecordHead + D), in intersection (cg-major)
// order so that each Gaussian's records are contiguous, and per-tile background
// gradients (C*T, D).
void composite_backward(const ImageGeometry& img, const Splats& sp, const TileLists& tl,
                        const float* backgrounds, const float* transmittance,
                        const int32_t* last, const float* g_colors, const float* g_alphas,
                        const float* g_depths, float* records, float* tile_v_backgrounds,
                        int threads);

// Sums the records of each projected Gaussian in a fixed order (its tiles in order), then
// over cameras in order where a parameter is shared: v_means2d (C,N,2), v_conics (C,N,3),
// v_depths (C,N), v_opacities (N), v_colors like sp.colors; v_backgrounds (C, D).
void reduce_gradients(const ImageGeometry& img, const Splats& sp, const int64_t* cg_offsets,
                      const float* records,
                      const float* tile_v_backgrounds, float* v_means2d, float* v_conics,
                      float* v_depths, float* v_opacities, float* v_colors, float* v_backgrounds,
                      int threads);

}  // namespace avatar_raster
