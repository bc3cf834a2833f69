//! Helpers shared by the unit tests that write Automerge chunks by hand.

pub(crate) use crate::fixtures::{write_sleb as sleb, write_uleb as uleb};
