"""The image sizes the processor tier checks every processor and formula at (shared by its test modules)."""

from __future__ import annotations

#: (width, height): tiny, ordinary photo/screen sizes, huge, and extreme aspect ratios both ways.
SIZES: tuple[tuple[int, int], ...] = (
    (1, 1),
    (8, 8),
    (17, 33),
    (28, 28),
    (64, 48),
    (224, 224),
    (336, 336),
    (384, 384),
    (448, 448),
    (500, 375),
    (333, 777),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1920, 1080),
    (1080, 1920),
    (2048, 2048),
    (3000, 2000),
    (4032, 3024),
    (6000, 4500),
    (4000, 100),
    (100, 4000),
    (1600, 40),
    (8000, 50),
    (50, 8000),
    # below min_pixels when min_pixels = max_pixels: the ceil-upscale overshoots max_pixels (docs/estimator.md §4)
    (7924, 56),
    (56, 7924),
)
