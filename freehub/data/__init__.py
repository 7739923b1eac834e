"""Image data for freehub: the embedded glyph set, bring-your-own loaders, class splits and episodes."""

from freehub.data.catalogue import DroppedGlyph, GlyphClass, GlyphReport
from freehub.data.episodes import Episode, EpisodeSampler
from freehub.data.folder import load_image_folder, read_image_folder
from freehub.data.glyphs import default_cache_dir, glyph_imageset, glyph_report, load_glyphs
from freehub.data.hf import load_hf_dataset, read_hf_dataset
from freehub.data.imageset import ImageSet, SplitData
from freehub.data.preview import save_grid, save_split_preview
from freehub.data.splits import DEFAULT_FRACTIONS, split_by_group, split_classes

__all__ = [
    "DEFAULT_FRACTIONS",
    "DroppedGlyph",
    "Episode",
    "EpisodeSampler",
    "GlyphClass",
    "GlyphReport",
    "ImageSet",
    "SplitData",
    "default_cache_dir",
    "glyph_imageset",
    "glyph_report",
    "load_glyphs",
    "load_hf_dataset",
    "load_image_folder",
    "read_hf_dataset",
    "read_image_folder",
    "save_grid",
    "save_split_preview",
    "split_by_group",
    "split_classes",
]
