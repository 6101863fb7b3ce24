"""Edge-aware upsampling of the class scores, guided by the frame itself.

The transfer labels a grid of cells (stride 4 or 8), and bilinear upsampling of its
scores gives masks whose edges are blurred by one cell: they leak across thin gaps (the
background between a bear's legs) and round off corners, which is what the boundary
measure F punishes.  The frame knows where the edges are.  A guided filter (He, Sun and
Tang, "Guided image filtering", ECCV 2010 / TPAMI 2013) fits, in every window, the scores
as a linear function of the frame's colour,

    q(x) = a . I(x) + b,        (a, b) = argmin  sum_window (a . I + b - p)^2 + eps |a|^2,

so that the output follows the colour edges of ``I`` wherever the scores change inside a
window, and stays the (smoothed) scores where the colours do not explain them (``eps``).

Here the scores ``p`` exist only on the grid, so the filter runs as the *fast* guided
filter (He and Sun, arXiv:1505.00996): the window statistics are computed on the grid from
each cell's mean colour and mean colour products (so the colour variance inside a cell
counts), the coefficients ``a`` and ``b`` are solved per cell (a 3x3 system with the colour
covariance), averaged over the window, and only then upsampled bilinearly; the full
resolution work is one ``a . I + b`` per pixel.

:func:`guided_upsample` is the fast path (all cells at once, closed-form 3x3 inverses);
:func:`guided_upsample_reference` computes the same thing the plain way (explicit window
sums and ``numpy.linalg.solve`` per cell) and tests compare the two.
:func:`refined_labels` is what the transfer calls: on the CPU with numba, one fused pass
per frame (cell statistics, window sums by integral images, the 3x3 solves, and per pixel
the bilinear coefficients, ``a . I + b`` and the winning class, with no full-resolution
intermediate), several times faster than the torch path, which it falls back to.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fused import available, numba

__all__ = ["cell_colour_statistics", "guided_upsample", "guided_upsample_reference", "refined_labels"]

#: the six distinct products of the colour channels: rr, rg, rb, gg, gb, bb
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _guide(frames, grid, stride: int) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` frames -> float ``(B, 3, h*s, w*s)`` in [0, 1], padded by
    replicating the last row and column up to whole cells."""
    guide = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    height, width = guide.shape[-2:]
    pad_h, pad_w = grid[0] * stride - height, grid[1] * stride - width
    if pad_h > 0 or pad_w > 0:
        guide = F.pad(guide, (0, max(pad_w, 0), 0, max(pad_h, 0)), mode="replicate")
    return guide[..., : grid[0] * stride, : grid[1] * stride]


def cell_colour_statistics(frames, grid, stride: int) -> torch.Tensor:
    """``(B, 9, h, w)``: each cell's mean colour (3) and mean colour products (6).

    These are all the filter needs of a frame at grid resolution; they do not depend on
    the scores, so a video computes them once."""
    guide = _guide(frames, grid, stride)
    products = torch.stack([guide[:, i] * guide[:, j] for i, j in _PAIRS], 1)
    return F.avg_pool2d(torch.cat([guide, products], 1), stride)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2r+1)^2`` window of cells, clipped at the borders."""
    if radius == 0:
        return x
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def _coefficients(stats: torch.Tensor, scores: torch.Tensor, radius: int, eps: float):
    """Window-averaged ``a`` ``(B, C, 3, h, w)`` and ``b`` ``(B, C, h, w)`` on the grid."""
    b_, n_classes = scores.shape[:2]
    colour, products = stats[:, :3], stats[:, 3:]
    mean_i = _box(colour, radius)  # (B, 3, h, w)
    mean_p = _box(scores, radius)  # (B, C, h, w)
    corr_ip = _box((colour[:, None] * scores[:, :, None]).flatten(1, 2), radius).unflatten(1, (n_classes, 3))
    cov_ip = corr_ip - mean_i[:, None] * mean_p[:, :, None]  # (B, C, 3, h, w)
    corr_ii = _box(products, radius)
    sigma = {}
    for c, (i, j) in enumerate(_PAIRS):
        sigma[i, j] = sigma[j, i] = corr_ii[:, c] - mean_i[:, i] * mean_i[:, j] + (eps if i == j else 0.0)
    # closed-form inverse of the symmetric 3x3 sigma: adjugate / determinant
    adj = {
        (0, 0): sigma[1, 1] * sigma[2, 2] - sigma[1, 2] * sigma[1, 2],
        (0, 1): sigma[0, 2] * sigma[1, 2] - sigma[0, 1] * sigma[2, 2],
        (0, 2): sigma[0, 1] * sigma[1, 2] - sigma[0, 2] * sigma[1, 1],
        (1, 1): sigma[0, 0] * sigma[2, 2] - sigma[0, 2] * sigma[0, 2],
        (1, 2): sigma[0, 2] * sigma[0, 1] - sigma[0, 0] * sigma[1, 2],
        (2, 2): sigma[0, 0] * sigma[1, 1] - sigma[0, 1] * sigma[0, 1],
    }
    for i, j in list(adj):
        adj[j, i] = adj[i, j]
    det = sigma[0, 0] * adj[0, 0] + sigma[0, 1] * adj[0, 1] + sigma[0, 2] * adj[0, 2]
    a = torch.stack([sum(adj[i, j][:, None] * cov_ip[:, :, j] for j in range(3)) for i in range(3)], 2)
    a = a / det[:, None, None]
    b = mean_p - (a * mean_i[:, None]).sum(2)
    return _box(a.flatten(1, 2), radius).unflatten(1, (n_classes, 3)), _box(b, radius)


def guided_upsample(scores: torch.Tensor, frames, stride: int, radius: int = 1, eps: float = 1e-3,
                    stats: torch.Tensor | None = None) -> torch.Tensor:
    """Scores ``(B, C, h, w)`` on the grid -> ``(B, C, H, W)`` at the frames' resolution,
    with edges following the frames' colour edges.

    ``frames`` uint8 ``(B, H, W, 3)``; ``radius`` the filter window's radius in cells;
    ``eps`` the regularisation (colour variance, on a 0..1 scale, below which a window is
    treated as flat); ``stats`` the frames' :func:`cell_colour_statistics` when already
    computed.
    """
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    grid = tuple(scores.shape[-2:])
    scores = scores.float().cpu()
    if stats is None:
        stats = cell_colour_statistics(frames, grid, stride)
    a, b = _coefficients(stats.float(), scores, radius, eps)
    size = (grid[0] * stride, grid[1] * stride)
    n_classes = scores.shape[1]
    up = F.interpolate(torch.cat([a.flatten(1, 2), b], 1), size=size, mode="bilinear", align_corners=False)
    up = up[..., :height, :width]
    guide = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    a_up = up[:, : 3 * n_classes].unflatten(1, (n_classes, 3))
    return (a_up * guide[:, None]).sum(2) + up[:, 3 * n_classes :]


def guided_upsample_reference(scores, frames, stride: int, radius: int = 1, eps: float = 1e-3) -> torch.Tensor:
    """:func:`guided_upsample` the plain way, for one frame at a time: per-cell colour
    means by explicit loops, window sums by loops over the window, one
    ``numpy.linalg.solve`` per cell; the same bilinear upsampling (torch's) at the end."""
    scores = np.asarray(scores, dtype=np.float64)
    frames = np.asarray(frames)
    n_frames, n_classes, h, w = scores.shape
    height, width = frames.shape[1:3]
    out = []
    for t in range(n_frames):
        image = frames[t].astype(np.float64) / 255.0
        padded = np.pad(image, ((0, h * stride - height), (0, w * stride - width), (0, 0)), mode="edge")
        mean_colour = np.zeros((h, w, 3))
        mean_outer = np.zeros((h, w, 3, 3))
        for y in range(h):
            for x in range(w):
                cell = padded[y * stride : (y + 1) * stride, x * stride : (x + 1) * stride].reshape(-1, 3)
                mean_colour[y, x] = cell.mean(0)
                mean_outer[y, x] = cell.T @ cell / len(cell)
        a = np.zeros((n_classes, h, w, 3))
        b = np.zeros((n_classes, h, w))
        for y in range(h):
            for x in range(w):
                ys = slice(max(0, y - radius), min(h, y + radius + 1))
                xs = slice(max(0, x - radius), min(w, x + radius + 1))
                mi = mean_colour[ys, xs].reshape(-1, 3).mean(0)
                sigma = mean_outer[ys, xs].reshape(-1, 3, 3).mean(0) - np.outer(mi, mi) + eps * np.eye(3)
                for c in range(n_classes):
                    p = scores[t, c, ys, xs].reshape(-1)
                    mp = p.mean()
                    cov = (mean_colour[ys, xs].reshape(-1, 3) * p[:, None]).mean(0) - mi * mp
                    a[c, y, x] = np.linalg.solve(sigma, cov)
                    b[c, y, x] = mp - a[c, y, x] @ mi
        mean_a = np.zeros_like(a)
        mean_b = np.zeros_like(b)
        for y in range(h):
            for x in range(w):
                ys = slice(max(0, y - radius), min(h, y + radius + 1))
                xs = slice(max(0, x - radius), min(w, x + radius + 1))
                mean_a[:, y, x] = a[:, ys, xs].reshape(n_classes, -1, 3).mean(1)
                mean_b[:, y, x] = b[:, ys, xs].reshape(n_classes, -1).mean(1)
        coeffs = torch.from_numpy(np.concatenate([mean_a.transpose(0, 3, 1, 2).reshape(-1, h, w), mean_b]))
        up = F.interpolate(coeffs[None], size=(h * stride, w * stride), mode="bilinear", align_corners=False)[0]
        up = up[:, :height, :width].numpy()
        a_up = up[: 3 * n_classes].reshape(n_classes, 3, height, width)
        out.append((a_up * image.transpose(2, 0, 1)[None]).sum(1) + up[3 * n_classes :])
    return torch.from_numpy(np.stack(out)).float()


# --------------------------------------------------------------------------- fused (numba)
if numba is not None:
    from numba import njit, prange

    @njit(cache=True, boundscheck=False)
    def _box_mean(x, radius):
        """Window means of ``x`` ``(n, h, w)`` over ``(2r+1)^2`` cells clipped at the
        borders, by an integral image per channel."""
        n, h, w = x.shape
        out = np.empty_like(x)
        acc = np.zeros((h + 1, w + 1))
        for c in range(n):
            for y in range(h):
                run = 0.0
                for xx in range(w):
                    run += x[c, y, xx]
                    acc[y + 1, xx + 1] = acc[y, xx + 1] + run
            for y in range(h):
                y0, y1 = max(0, y - radius), min(h, y + radius + 1)
                for xx in range(w):
                    x0, x1 = max(0, xx - radius), min(w, xx + radius + 1)
                    total = acc[y1, x1] - acc[y0, x1] - acc[y1, x0] + acc[y0, x0]
                    out[c, y, xx] = total / ((y1 - y0) * (x1 - x0))
        return out

    @njit(cache=True, boundscheck=False)
    def _frame_coefficients(frame, scores, stride, radius, eps):
        """``(4C, h, w)`` window-averaged coefficients (a for each class and colour, then b)."""
        n_classes, h, w = scores.shape
        height, width = frame.shape[0], frame.shape[1]
        inv = 1.0 / (255.0 * stride * stride)
        inv2 = inv / 255.0
        n_stats = 9 + 4 * n_classes
        stats = np.zeros((n_stats, h, w))
        s = np.zeros(9)
        for cy in range(h):
            for cx in range(w):
                s[:] = 0.0
                for yy in range(cy * stride, cy * stride + stride):
                    y = min(yy, height - 1)
                    for xs in range(cx * stride, cx * stride + stride):
                        x = min(xs, width - 1)
                        r, g, b = float(frame[y, x, 0]), float(frame[y, x, 1]), float(frame[y, x, 2])
                        s[0] += r
                        s[1] += g
                        s[2] += b
                        s[3] += r * r
                        s[4] += r * g
                        s[5] += r * b
                        s[6] += g * g
                        s[7] += g * b
                        s[8] += b * b
                for i in range(3):
                    stats[i, cy, cx] = s[i] * inv
                for i in range(3, 9):
                    stats[i, cy, cx] = s[i] * inv2
                for c in range(n_classes):
                    p = scores[c, cy, cx]
                    stats[9 + c, cy, cx] = p
                    for i in range(3):
                        stats[9 + n_classes + 3 * c + i, cy, cx] = stats[i, cy, cx] * p
        means = _box_mean(stats, radius)
        coeffs = np.empty((4 * n_classes, h, w))
        sigma = np.empty((3, 3))
        for cy in range(h):
            for cx in range(w):
                m0, m1, m2 = means[0, cy, cx], means[1, cy, cx], means[2, cy, cx]
                sigma[0, 0] = means[3, cy, cx] - m0 * m0 + eps
                sigma[0, 1] = sigma[1, 0] = means[4, cy, cx] - m0 * m1
                sigma[0, 2] = sigma[2, 0] = means[5, cy, cx] - m0 * m2
                sigma[1, 1] = means[6, cy, cx] - m1 * m1 + eps
                sigma[1, 2] = sigma[2, 1] = means[7, cy, cx] - m1 * m2
                sigma[2, 2] = means[8, cy, cx] - m2 * m2 + eps
                a00 = sigma[1, 1] * sigma[2, 2] - sigma[1, 2] * sigma[1, 2]
                a01 = sigma[0, 2] * sigma[1, 2] - sigma[0, 1] * sigma[2, 2]
                a02 = sigma[0, 1] * sigma[1, 2] - sigma[0, 2] * sigma[1, 1]
                a11 = sigma[0, 0] * sigma[2, 2] - sigma[0, 2] * sigma[0, 2]
                a12 = sigma[0, 2] * sigma[0, 1] - sigma[0, 0] * sigma[1, 2]
                a22 = sigma[0, 0] * sigma[1, 1] - sigma[0, 1] * sigma[0, 1]
                det = sigma[0, 0] * a00 + sigma[0, 1] * a01 + sigma[0, 2] * a02
                for c in range(n_classes):
                    mp = means[9 + c, cy, cx]
                    base = 9 + n_classes + 3 * c
                    v0 = means[base, cy, cx] - m0 * mp
                    v1 = means[base + 1, cy, cx] - m1 * mp
                    v2 = means[base + 2, cy, cx] - m2 * mp
                    c0 = (a00 * v0 + a01 * v1 + a02 * v2) / det
                    c1 = (a01 * v0 + a11 * v1 + a12 * v2) / det
                    c2 = (a02 * v0 + a12 * v1 + a22 * v2) / det
                    coeffs[3 * c, cy, cx] = c0
                    coeffs[3 * c + 1, cy, cx] = c1
                    coeffs[3 * c + 2, cy, cx] = c2
                    coeffs[3 * n_classes + c, cy, cx] = mp - c0 * m0 - c1 * m1 - c2 * m2
        return _box_mean(coeffs, radius)

    @njit(cache=True, parallel=True, boundscheck=False, fastmath={"contract"})
    def _refine_kernel(frames, scores, stride, radius, eps, out):
        n_frames, n_classes, h, w = scores.shape
        height, width = frames.shape[1], frames.shape[2]
        n_coeffs = 4 * n_classes  # per class: a_r, a_g, a_b, b
        # the horizontal taps of the bilinear upsampling (align_corners=False), once
        x0s = np.empty(width, np.int64)
        x1s = np.empty(width, np.int64)
        lxs = np.empty(width, np.float32)
        for x in range(width):
            sx = max((x + 0.5) / stride - 0.5, 0.0)
            x0s[x] = min(int(sx), w - 1)
            x1s[x] = min(x0s[x] + 1, w - 1)
            lxs[x] = sx - int(sx) if int(sx) < w - 1 else 0.0
        for t in prange(n_frames):
            full = _frame_coefficients(frames[t], scores[t], stride, radius, eps)
            coeffs = np.empty((h, w, n_coeffs), np.float32)  # cell-major: one cache line per cell
            for c in range(n_classes):
                for cy in range(h):
                    for cx in range(w):
                        for i in range(3):
                            coeffs[cy, cx, 4 * c + i] = full[3 * c + i, cy, cx]
                        coeffs[cy, cx, 4 * c + 3] = full[3 * n_classes + c, cy, cx]
            row = np.empty((w, n_coeffs), np.float32)
            q = np.empty(n_classes, np.float32)
            inv = np.float32(1.0 / 255.0)
            for y in range(height):
                sy = max((y + 0.5) / stride - 0.5, 0.0)
                y0 = min(int(sy), h - 1)
                y1 = min(y0 + 1, h - 1)
                ly = np.float32(sy - int(sy) if int(sy) < h - 1 else 0.0)
                for cx in range(w):
                    for k in range(n_coeffs):
                        row[cx, k] = (1 - ly) * coeffs[y0, cx, k] + ly * coeffs[y1, cx, k]
                x = 0
                while x < width:
                    x0, x1, lx = x0s[x], x1s[x], lxs[x]
                    if n_classes == 1:
                        # a run of pixels between the same two cell centres: q = a . I + b with
                        # I in [0, 1]^3, a and b interpolated, so |q - b| <= max |a|_1 there;
                        # where the bound cannot change b's sign the run is decided unread
                        end = x + 1
                        while end < width and x0s[end] == x0:
                            end += 1
                        spread = max(abs(row[x0, 0]) + abs(row[x0, 1]) + abs(row[x0, 2]),
                                     abs(row[x1, 0]) + abs(row[x1, 1]) + abs(row[x1, 2]))
                        low, high = min(row[x0, 3], row[x1, 3]), max(row[x0, 3], row[x1, 3])
                        if low > spread or high < -spread:
                            fill = 1 if low > spread else 0
                            for xx in range(x, end):
                                out[t, y, xx] = fill
                            x = end
                            continue
                        for xx in range(x, end):
                            lx = lxs[xx]
                            value = ((1 - lx) * row[x0, 0] + lx * row[x1, 0]) * frames[t, y, xx, 0] * inv \
                                + ((1 - lx) * row[x0, 1] + lx * row[x1, 1]) * frames[t, y, xx, 1] * inv \
                                + ((1 - lx) * row[x0, 2] + lx * row[x1, 2]) * frames[t, y, xx, 2] * inv \
                                + (1 - lx) * row[x0, 3] + lx * row[x1, 3]
                            out[t, y, xx] = 1 if value > 0 else 0
                        x = end
                        continue
                    r = frames[t, y, x, 0] * inv
                    g = frames[t, y, x, 1] * inv
                    b = frames[t, y, x, 2] * inv
                    for c in range(n_classes):
                        k = 4 * c
                        ar = (1 - lx) * row[x0, k] + lx * row[x1, k]
                        ag = (1 - lx) * row[x0, k + 1] + lx * row[x1, k + 1]
                        ab = (1 - lx) * row[x0, k + 2] + lx * row[x1, k + 2]
                        bb = (1 - lx) * row[x0, k + 3] + lx * row[x1, k + 3]
                        q[c] = ar * r + ag * g + ab * b + bb
                    best = 0
                    for c in range(1, n_classes):
                        if q[c] > q[best]:
                            best = c
                    out[t, y, x] = best
                    x += 1


def refined_labels(scores: torch.Tensor, frames, stride: int, radius: int = 1, eps: float = 1e-3) -> np.ndarray:
    """``(B, H, W)`` uint8 class indices from grid scores ``(B, C, h, w)``: the argmax of
    :func:`guided_upsample` (for one channel, e.g. the difference of two classes'
    scores: 1 where it is positive).  Fused numba kernel on the CPU, torch otherwise."""
    frames = np.ascontiguousarray(frames)
    if available():
        scores_np = np.ascontiguousarray(scores.detach().cpu().numpy(), dtype=np.float32)
        out = np.empty(frames.shape[:3], np.uint8)
        _refine_kernel(frames, scores_np, int(stride), int(radius), float(eps), out)
        return out
    up = guided_upsample(scores, frames, stride, radius, eps)
    return (up[:, 0] > 0).to(torch.uint8).numpy() if up.shape[1] == 1 else up.argmax(1).to(torch.uint8).numpy()
