//! CLIP tokenization (in progress)
