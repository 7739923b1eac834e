"""PNG grids of images, with and without row titles."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from freehub.data import ImageSet, SplitData, save_grid, save_split_preview
from freehub.errors import DataError


def test_grid_has_one_cell_per_image_at_the_given_scale(tmp_path):
    path = save_grid(images=torch.rand(6, 3, 8, 8), path=tmp_path / "grid.png", nrow=3, scale=2)
    with Image.open(path) as image:
        # 3 columns and 2 rows of 16-pixel cells with a 2-pixel gap around each.
        assert image.size == (3 * 18 + 2, 2 * 18 + 2)


def test_uint8_grey_images_are_accepted_and_keep_their_values(tmp_path):
    images = torch.full((2, 1, 4, 4), 77, dtype=torch.uint8)
    path = save_grid(images=images, path=tmp_path / "grey.png", nrow=2, scale=1)
    with Image.open(path) as image:
        assert image.convert("RGB").getpixel((3, 3)) == (77, 77, 77)


def test_titles_widen_the_sheet(tmp_path):
    plain = save_grid(images=torch.rand(4, 3, 8, 8), path=tmp_path / "a.png", nrow=2)
    titled = save_grid(images=torch.rand(4, 3, 8, 8), path=tmp_path / "b.png", nrow=2, titles=["first", "second"])
    with Image.open(plain) as a, Image.open(titled) as b:
        assert b.width > a.width and b.height == a.height


def test_wrong_number_of_titles_raises(tmp_path):
    with pytest.raises(DataError, match="titles"):
        save_grid(images=torch.rand(4, 3, 8, 8), path=tmp_path / "c.png", nrow=2, titles=["only one"])


def test_split_preview_has_one_row_per_sampled_class(tmp_path):
    def part(offset: int) -> ImageSet:
        labels = torch.arange(3).repeat_interleave(2)
        return ImageSet(
            images=torch.zeros(6, 3, 8, 8, dtype=torch.uint8),
            labels=labels,
            class_names=tuple(f"c{offset + i}" for i in range(3)),
            class_groups=("g",) * 3,
        )

    data = SplitData(train=part(0), val=part(3), test=part(6))
    path = save_split_preview(data=data, path=tmp_path / "p.png", classes_per_split=2, images_per_class=2)
    with Image.open(path) as image:
        assert image.height == 6 * (16 + 2) + 2
