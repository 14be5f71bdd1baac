//! Datasets: CIFAR-10/100 in either official layout (binary or python pickle), Tiny-ImageNet
//! (and Tiny-ImageNet-C) from their JPEG folders, and a built-in procedurally drawn set that
//! needs no download.
//!
//! Everything lands in one in-memory form, [`ImageSet`]: 8-bit pixels, CHW per image, images
//! back to back, which is also the order of the official CIFAR binary records, so loading is a
//! copy and normalisation happens later, on the device that trains.

pub mod batch;
pub mod cifar;
pub mod numpy;
pub mod pickle;
pub mod source;
pub mod synthetic;
pub mod tiny_imagenet;

/// The size of one image, CHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// A labelled set of 8-bit images, each stored CHW (channel planes), images back to back.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// `len() * channels * height * width` bytes.
    pub images: Vec<u8>,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

impl ImageSet {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The size of one image.
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            c: self.channels,
            h: self.height,
            w: self.width,
        }
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, CHW. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.images[i * s..(i + 1) * s]
    }

    /// The images at `indices`, in that order (repeats allowed). Panics if an index is out of
    /// range, like slice indexing: indices come from the program, not from a file.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_size());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet {
            images,
            labels,
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
        }
    }

    /// The number of images of each class (`num_classes` entries; labels out of range, which
    /// the loaders never produce, are not counted).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}
