//! The drawing surface of every plot: plotters' RGB bitmap backend with our own text.
//!
//! Text is laid out and rasterised here with `ab_glyph` from DejaVu Sans compiled into the
//! binary (the `dejavu` crate): no system font, fontconfig or freetype is involved. plotters'
//! own `ab_glyph` text path ignores each glyph's side bearing (letters crowd: "cl" reads "d"),
//! so this backend draws text itself and forwards everything else to `BitMapBackend`.
use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle as BFontStyle,
};
use std::sync::OnceLock;

/// DejaVu Sans, regular and bold; parsed once.
pub struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

pub fn fonts() -> Option<&'static Fonts> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let regular = FontRef::try_from_slice(dejavu::sans::regular()).ok()?;
            let bold = FontRef::try_from_slice(dejavu::sans::bold()).ok()?;
            // plotters measures legend boxes with its own font table: give it the same font.
            for family in ["sans-serif", "serif", "monospace"] {
                plotters::style::register_font(family, FontStyle::Normal, dejavu::sans::regular()).ok()?;
                plotters::style::register_font(family, FontStyle::Bold, dejavu::sans::bold()).ok()?;
            }
            Some(Fonts { regular, bold })
        })
        .as_ref()
}

impl Fonts {
    fn pick(&self, style: BFontStyle) -> &FontRef<'static> {
        match style {
            BFontStyle::Bold => &self.bold,
            _ => &self.regular,
        }
    }

    /// Width in pixels of `text` at line height `size`.
    pub fn width(&self, bold: bool, size: f64, text: &str) -> f32 {
        self.measure(if bold { BFontStyle::Bold } else { BFontStyle::Normal }, size, text).0
    }

    /// Width of `text` and the line's ascent and descent (descent < 0), in pixels, for a line
    /// height of `size` pixels (the `size` plotters passes).
    fn measure(&self, style: BFontStyle, size: f64, text: &str) -> (f32, f32, f32) {
        let f = self.pick(style).as_scaled(PxScale::from(size as f32));
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                width += f.kern(p, id);
            }
            width += f.h_advance(id);
            prev = Some(id);
        }
        (width, f.ascent(), f.descent())
    }
}

/// `BitMapBackend` with text drawn by [`Fonts`].
pub struct Canvas<'a> {
    inner: BitMapBackend<'a>,
    fonts: &'static Fonts,
}

impl<'a> Canvas<'a> {
    pub fn new(buf: &'a mut [u8], size: (u32, u32), fonts: &'static Fonts) -> Self {
        Canvas { inner: BitMapBackend::with_buffer(buf, size), fonts }
    }
}

type Res<E> = Result<(), DrawingErrorKind<E>>;

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Res<Self::ErrorType> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Res<Self::ErrorType> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Res<Self::ErrorType> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S) -> Res<Self::ErrorType> {
        self.inner.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Res<Self::ErrorType> {
        self.inner.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Res<Self::ErrorType> {
        self.inner.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(&mut self, c: BackendCoord, r: u32, s: &S, fill: bool) -> Res<Self::ErrorType> {
        self.inner.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Res<Self::ErrorType> {
        self.inner.fill_polygon(vert, s)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Res<Self::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    /// The line box (advance width x (ascent - descent)), as plotters' default measures it.
    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (w, asc, desc) = self.fonts.measure(style.style(), style.size(), text);
        Ok((w.ceil() as u32, (asc - desc).ceil() as u32))
    }

    /// Anchoring and rotation as plotters' default `draw_text`; glyphs placed at their
    /// side bearings on one baseline and blended by coverage.
    fn draw_text<T: BackendTextStyle>(&mut self, text: &str, style: &T, pos: BackendCoord) -> Res<Self::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let font = self.fonts.pick(style.style()).as_scaled(PxScale::from(style.size() as f32));
        let (w, asc, desc) = self.fonts.measure(style.style(), style.size(), text);
        let (w, h) = (w.ceil() as i32, (asc - desc).ceil() as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let trans = style.transform();
        let (cw, ch) = self.get_size();
        let mut pen = 0.0;
        let mut prev = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                pen += font.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(font.scale(), point(pen, asc));
            pen += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue }; // spaces
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                if cov <= 0.0 || result.is_err() {
                    return;
                }
                let (x, y) = trans.transform(b.min.x as i32 + gx as i32 + dx, b.min.y as i32 + gy as i32 + dy);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && x < cw as i32 && y < ch as i32 {
                    let c = BackendColor { alpha: color.alpha * cov.min(1.0) as f64, rgb: color.rgb };
                    result = self.inner.draw_pixel((x, y), c);
                }
            });
            if result.is_err() {
                break;
            }
        }
        result
    }
}
