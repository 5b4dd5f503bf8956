"""projects/sheets.py: panels, grids, legends, heatmap overlays, contact sheets, index pages."""
import numpy as np
import pytest
from PIL import Image

from projects.colors import MARK_COLOR, scalar_colors
from projects.sheets import (DPI, LEGEND_ROW_H, SUPTITLE_H, TITLE_H, TITLE_LINE_H, Panel, compose_grid, contact_sheet,
                             draw_marker, grid_figure, label_legend, overlay_heatmap, scale_legend, write_index_html)

RED, GREEN, BLUE, YELLOW = (200, 30, 30), (30, 160, 60), (40, 60, 220), (230, 200, 20)


def _solid(color, h=40, w=60):
    return np.full((h, w, 3), color, np.uint8)


def _png(path):
    return np.asarray(Image.open(path).convert('RGB')).astype(int)


def test_label_legend():
    pal = [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]
    entries = label_legend([np.array([[3, 1], [255, 1]]), np.array([-1, 1])], pal, ['a', 'b', 'c', 'd'])
    assert entries == [('b', (1, 1, 1)), ('d', (3, 3, 3))]   # present, in label order, ignore labels left out
    assert label_legend([np.array([2])], pal) == [('2', (2, 2, 2))]   # names default to the numbers
    capped = label_legend([np.arange(4)], pal, max_entries=3)
    assert [name for name, _ in capped] == ['0', '1', '2', '+1 more']
    assert len(label_legend([np.arange(4)], pal, max_entries=None)) == 4
    assert label_legend([], pal) == []


@pytest.mark.parametrize('gap,margin', [(0, 0), (6, 10)])
def test_grid_places_panels_row_by_row(tmp_path, gap, margin):
    rows = [[Panel(_solid(RED), 'a'), Panel(_solid(GREEN), 'b')], [Panel(_solid(BLUE), 'c')]]
    out = compose_grid(rows, str(tmp_path / 'grid.png'), gap=gap, margin=margin, title='sheet',
                       legend=[('thing', YELLOW)])
    img = _png(out)
    ch, cw = 40, 60
    top_px = DPI * SUPTITLE_H
    row_px = ch + DPI * TITLE_H
    height = DPI * (SUPTITLE_H + 2 * ch / DPI + 2 * TITLE_H + 0.1 + LEGEND_ROW_H)
    assert img.shape == (round(height), 2 * margin + 2 * cw + gap, 3)
    for (i, j), colour in {(0, 0): RED, (0, 1): GREEN, (1, 0): BLUE}.items():
        y0, x0 = round(top_px + i * row_px + DPI * TITLE_H), margin + j * (cw + gap)
        cell = img[y0 + 2:y0 + ch - 2, x0 + 2:x0 + cw - 2]
        assert (cell == colour).all(), (i, j)
    # the second row has one panel: where its second would be stays white
    y1 = round(top_px + row_px + DPI * TITLE_H)
    assert (img[y1 + 2:y1 + ch - 2, margin + cw + gap + 2:margin + 2 * cw + gap - 2] == 255).all()
    if gap:  # the gap between panels is white
        y0 = round(top_px + DPI * TITLE_H)
        assert (img[y0 + 2:y0 + ch - 2, margin + cw + 1:margin + cw + gap - 1] == 255).all()
    # the legend patch is drawn below the panels
    legend_band = img[round(height - DPI * (0.1 + LEGEND_ROW_H)) - 2:]
    assert (np.abs(legend_band - YELLOW).sum(-1) < 10).sum() > 20


def test_grid_panel_height_scales_images(tmp_path):
    rows = [[Panel(_solid(RED, 20, 40), 'x'), Panel(_solid(GREEN, 20, 40), 'y')]]
    img = _png(compose_grid(rows, str(tmp_path / 'g.png'), panel_height=50))
    assert img.shape[1] == 2 * 100    # cells of 50 px height keep the 2:1 aspect
    y0 = round(DPI * TITLE_H)
    assert (img[y0 + 2:y0 + 48, 2:98] == RED).all() and (img[y0 + 2:y0 + 48, 102:198] == GREEN).all()
    fig = grid_figure(rows)   # the Figure itself, for callers that add to it (a colour bar)
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ['x', 'y']


def test_grid_errors():
    with pytest.raises(ValueError, match=r'at least one panel in every row, got rows of \[1, 0\] panels'):
        grid_figure([[Panel(_solid(RED))], []])
    with pytest.raises(TypeError, match='rows must hold Panel objects, got ndarray'):
        grid_figure([[_solid(RED)]])
    with pytest.raises(ValueError, match=r"panel 'gray': image must be \(H, W, 3\) RGB, got shape \(4, 4\)"):
        Panel(np.zeros((4, 4), np.uint8), 'gray')


def test_overlay_heatmap_is_the_written_out_blend():
    from matplotlib import colormaps
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    heat = rng.random((6, 8))
    out = overlay_heatmap(image, heat, alpha=0.3, cmap='viridis')
    t = (heat - heat.min()) / (heat.max() - heat.min())
    colour = np.round(colormaps['viridis'](t)[..., :3] * 255)
    np.testing.assert_array_equal(out, np.round(0.7 * image + 0.3 * colour).astype(np.uint8))
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)


def test_overlay_heatmap_resizes_bilinearly():
    """A (2, 3) attention map over a (8, 12) image: bilinear upsampling as F.interpolate (half-pixel centres)."""
    import torch
    import torch.nn.functional as F
    heat = np.array([[0.0, 1.0, 0.2], [0.5, 0.9, 0.0]], np.float32)
    image = np.zeros((8, 12, 3), np.uint8)
    up = F.interpolate(torch.from_numpy(heat)[None, None], size=(8, 12), mode='bilinear', align_corners=False)[0, 0]
    expected = overlay_heatmap(image, up.numpy(), alpha=1.0, vmin=0.0, vmax=1.0)
    got = overlay_heatmap(image, heat, alpha=1.0, vmin=0.0, vmax=1.0)
    assert np.abs(got.astype(int) - expected).max() <= 2   # colour-map bins of float rounding
    with pytest.raises(ValueError, match=r'heat must be a \(h, w\) map, got shape \(1, 2, 3\)'):
        overlay_heatmap(image, heat[None])
    with pytest.raises(ValueError, match=r'alpha must be in \[0, 1\], got 1.5'):
        overlay_heatmap(image, heat, alpha=1.5)


def test_multiline_titles_make_their_row_taller(tmp_path):
    one = _png(compose_grid([[Panel(_solid(RED), 'a')], [Panel(_solid(BLUE), 'b')]], str(tmp_path / '1.png')))
    two = _png(compose_grid([[Panel(_solid(RED), 'a\nmax 3')], [Panel(_solid(BLUE), 'b')]], str(tmp_path / '2.png')))
    assert two.shape[0] == one.shape[0] + round(DPI * TITLE_LINE_H)
    y1 = round(DPI * (2 * TITLE_H + TITLE_LINE_H) + 40)      # the second row's image starts below both titles
    assert (two[y1 + 2:y1 + 38, 2:58] == BLUE).all()


def test_draw_marker_rings_the_pixel():
    img = draw_marker(_solid((0, 0, 255), 60, 80), (30, 20), radius=8)
    mark = (np.abs(img.astype(int) - MARK_COLOR).sum(-1) < 10)
    ys, xs = np.nonzero(mark)
    assert mark.sum() > 30 and abs(xs.mean() - 30) < 1 and abs(ys.mean() - 20) < 1
    assert xs.min() >= 30 - 8 and xs.max() <= 30 + 8
    assert (img[:, 50:] == (0, 0, 255)).all()                  # untouched away from the ring
    assert (img[20, 30 - 8] == 0).all()                        # a black outline around the ring
    with pytest.raises(ValueError, match=r'image must be \(H, W, 3\) RGB, got shape \(4, 4\)'):
        draw_marker(np.zeros((4, 4)), (1, 1))


def test_scale_legend_spans_the_colour_map():
    entries = scale_legend('jet', ('0', 'mid', 'max'))
    assert [name for name, _ in entries] == ['0', 'mid', 'max']
    assert [c for _, c in entries] == [tuple(c) for c in scalar_colors(np.array([0, 0.5, 1.0]), 'jet', 0, 1)]


def test_contact_sheet_tiles_images(tmp_path):
    files = []
    for i, c in enumerate((RED, GREEN, BLUE)):
        files.append(str(tmp_path / f'{i}.png'))
        Image.fromarray(_solid(c, 30, 50)).save(files[-1])
    out = contact_sheet(files, str(tmp_path / 'sheet.png'), cols=2, thumb_width=100, captions=['r', 'g', 'b'])
    img = _png(out)
    cell_h = 60 + 20   # thumbnails scaled to 100 x 60 under a 20 px caption line
    assert img.shape == (2 * cell_h, 200, 3)
    for k, c in enumerate((RED, GREEN, BLUE)):
        x, y = (k % 2) * 100, (k // 2) * cell_h + 20
        assert (np.abs(img[y + 5:y + 55, x + 5:x + 95] - c).sum(-1) < 12).all(), k
    assert (img[cell_h + 25:, 105:] == 255).all()   # the fourth cell is empty
    with pytest.raises(ValueError, match='2 captions for 3 images'):
        contact_sheet(files, str(tmp_path / 'x.png'), captions=['a', 'b'])
    with pytest.raises(ValueError, match='at least one image'):
        contact_sheet([], str(tmp_path / 'x.png'))


def test_index_html_links_relative_and_escaped(tmp_path):
    (tmp_path / 'pics').mkdir()
    page = write_index_html([dict(image=str(tmp_path / 'pics' / 'a.png'), caption='a < b',
                                  links=dict(ply=str(tmp_path / 'pics' / 'a.ply')))],
                            str(tmp_path / 'site' / 'index.html'), title='run & test')
    text = open(page).read()
    assert '<title>run &amp; test</title>' in text
    assert 'src="../pics/a.png"' in text and 'href="../pics/a.ply">ply</a>' in text
    assert 'a &lt; b' in text
