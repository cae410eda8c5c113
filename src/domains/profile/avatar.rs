//! Avatar images: which types are accepted, the check that the bytes really are an image
//! of the claimed type (decoded under pixel and memory limits, so a decompression bomb is
//! refused before it is expanded), and the square PNG thumbnail. Pure and CPU-bound: the
//! service runs it on a blocking thread; nothing here stores anything.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageError, ImageFormat, ImageReader, Limits};

use super::ProfileError;

/// Memory the decoder may use for one avatar, whatever its edge limit.
const DECODE_MAX_ALLOC: u64 = 256 << 20;

/// The image types accepted as avatars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// `image/png`
    Png,
    /// `image/jpeg`
    Jpeg,
    /// `image/gif`
    Gif,
    /// `image/webp`
    Webp,
}

impl ImageType {
    /// The type named by a media type (parameters and case ignored), if accepted.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "image/png" => Some(Self::Png),
            "image/jpeg" | "image/jpg" => Some(Self::Jpeg),
            "image/gif" => Some(Self::Gif),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }

    /// The canonical media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Gif => ImageFormat::Gif,
            Self::Webp => ImageFormat::WebP,
        }
    }
}

/// Checks that `bytes` decode as `ty` within `max_edge` pixels per side and returns a
/// `thumb_px` × `thumb_px` PNG of the image's centre square (scaled up or down).
pub fn thumbnail(bytes: &[u8], ty: ImageType, max_edge: u32, thumb_px: u32) -> Result<Vec<u8>, ProfileError> {
    let not_that_type = || ProfileError::InvalidImage(format!("the body is not a valid {} image", ty.media_type()));
    // The signature first: a JPEG sent as image/png is refused with a clear message.
    if image::guess_format(bytes).ok() != Some(ty.format()) {
        return Err(not_that_type());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_edge);
    limits.max_image_height = Some(max_edge);
    limits.max_alloc = Some(DECODE_MAX_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ty.format());
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => ProfileError::ImageDimensions { max_edge },
        _ => not_that_type(),
    })?;
    let px = thumb_px.max(1);
    let thumb = img.resize_to_fill(px, px, FilterType::Triangle);
    let mut out = Cursor::new(Vec::new());
    thumb.write_to(&mut out, ImageFormat::Png).map_err(|e| ProfileError::Internal(format!("thumbnail: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, RgbImage};

    fn encoded(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_are_square_pngs_of_the_asked_size() {
        for (w, h) in [(300, 200), (20, 90), (64, 64)] {
            let png = thumbnail(&encoded(w, h, ImageFormat::Png), ImageType::Png, 4096, 64).unwrap();
            let img = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64));
        }
        let jpeg = encoded(50, 40, ImageFormat::Jpeg);
        assert!(thumbnail(&jpeg, ImageType::Jpeg, 4096, 16).is_ok());
    }

    #[test]
    fn bytes_must_be_the_claimed_type() {
        let jpeg = encoded(10, 10, ImageFormat::Jpeg);
        assert!(matches!(thumbnail(&jpeg, ImageType::Png, 4096, 16), Err(ProfileError::InvalidImage(_))));
        assert!(matches!(
            thumbnail(b"hello, not an image", ImageType::Png, 4096, 16),
            Err(ProfileError::InvalidImage(_))
        ));
        let mut cut = encoded(10, 10, ImageFormat::Png);
        cut.truncate(cut.len() / 2);
        assert!(matches!(thumbnail(&cut, ImageType::Png, 4096, 16), Err(ProfileError::InvalidImage(_))));
    }

    #[test]
    fn images_past_the_edge_limit_are_refused_before_decoding() {
        let wide = encoded(600, 2, ImageFormat::Png);
        assert!(matches!(
            thumbnail(&wide, ImageType::Png, 500, 16),
            Err(ProfileError::ImageDimensions { max_edge: 500 })
        ));
    }

    #[test]
    fn media_types_are_matched_without_parameters_or_case() {
        assert_eq!(ImageType::from_media_type("Image/PNG; charset=x"), Some(ImageType::Png));
        assert_eq!(ImageType::from_media_type("image/svg+xml"), None);
        assert_eq!(ImageType::from_media_type("text/plain"), None);
    }
}
