"""Box-loss settings (α, λ, σ) <-> the noise scales they imply, exactly (Section 6).

Reading the box loss as a KL divergence between Laplace distributions (Eq. 21, 26, 32):

- smooth-l1 form ``(λ/α)·H_α(t − t̃*)`` (the implementation's, smooth L1 with beta = α and
  weight λ) with targets divided by σ: ``≈ D_{α·σ·w_a, σ·w_a/λ}(x̃ − x*)``, so the label-noise
  scale is ``α·σ·w_a`` and the prediction-noise scale ``σ·w_a/λ``;
- huber form ``λ·H_α(t − t̃*)`` (the publication's): ``λ·H_α(γx) ≈ D_{α/γ, 1/(αγλ)}(x)``
  with ``γ = 1/(σ·w_a)`` (Sec. 4.3), so label ``α·σ·w_a`` and prediction ``σ·w_a/(αλ)``;
- an L1 loss (beta = 0) is the α -> 0 limit: label 0, prediction ``σ·w_a/λ`` in either form;
- a ``kl`` loss trains ``D_{α/2,1/α}`` in place of ``H_α`` (Appendix E), whose reading is
  exact rather than approximate: label ``α·σ·w_a/2``, prediction as for the Huber loss.

Widths and heights read the same through ``log w ≈ w/w_a − 1`` (Eq. 30-32); y and h are in
units of the anchor height h_a. Every scale is a :class:`fractions.Fraction` in anchor
units, so Table 2 of the paper comes out exactly.

The package is torch-free (rich is imported only to build tables) so that ``huberkl
interpret`` starts instantly. Its modules, each importing only those above it:

- :mod:`~huberkl.interpret.scales`: parsing, the mapping both ways, the paper's notation;
- :mod:`~huberkl.interpret.readings`: a stage's settings with their scales;
- :mod:`~huberkl.interpret.fragments`: torchvision/detectron2/mmdetection config text;
- :mod:`~huberkl.interpret.render`: JSON, CSV, Markdown and rich tables.
"""

from huberkl.interpret.fragments import FRAMEWORKS, HEADS, fragments, framework_settings
from huberkl.interpret.readings import (
    STAGE_HEAD,
    Reading,
    head_of,
    read_preset,
    read_stage,
    stage_label,
)
from huberkl.interpret.render import (
    CSV_FIELDS,
    FORMATS,
    ROW_NAMES,
    render_csv,
    render_json,
    render_markdown,
    rich_tables,
    sections,
    table1_rows,
    table2_rows,
    to_json,
)
from huberkl.interpret.scales import (
    UNIT,
    NoiseScales,
    check_form,
    decimal_text,
    noise_scales,
    parse_coords,
    parse_scale,
    scale_text,
    settings_for,
)

__all__ = [
    "CSV_FIELDS", "FORMATS", "FRAMEWORKS", "HEADS", "ROW_NAMES", "STAGE_HEAD", "UNIT",
    "NoiseScales", "Reading", "check_form", "decimal_text", "fragments", "framework_settings",
    "head_of", "noise_scales", "parse_coords", "parse_scale", "read_preset", "read_stage",
    "render_csv", "render_json", "render_markdown", "rich_tables", "scale_text", "sections",
    "settings_for", "stage_label", "table1_rows", "table2_rows", "to_json",
]  # fmt: skip
