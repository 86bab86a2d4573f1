//! The format stamp pinned beside the maps (`maps-v<LAYOUT_VERSION>/FORMAT`):
//! which placement and meaning of the pinned entries the lbd that runs on
//! them wrote, so a start can tell a data plane of a newer build, whose
//! tables it would misread, from its own or an older one's.
//!
//! A pinned array map rather than a file beside the pins: a BPF filesystem
//! holds only pins, directories and symlinks (no regular files), and every
//! entry of a layout directory is a pin to the code that snapshots, undoes,
//! stages and cleans it (`PinDir::snapshot`, `remove_made_since`,
//! `remove_all`): a map pinned there goes with the maps it describes, at a
//! `lbd --cleanup` or a reboot, and is read with the same system calls.
//! Its shape (an array of `u64`, the epoch at index 0, the other slots
//! zero and reserved) is fixed for every build from this one on; a stamp
//! of another shape can only be a newer build's.

use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, MapInfo, MapType};

use super::{PinDir, PinError, LAYOUT_VERSION};

/// The name of the stamp's pin in the layout directory.
pub(crate) const FORMAT_PIN: &str = "FORMAT";

/// Slots of the stamp: the epoch at 0, the rest reserved (zero) for what
/// a later build needs to say beside it.
const FORMAT_SLOTS: u32 = 4;

/// The placement and meaning of the pinned maps' entries this build
/// writes, bumped whenever they change without the maps' sizes changing
/// (a change of size or type is caught by the map check): also for a
/// change an upgrade handles (`FlowTable::re_place` moves flows of an
/// older placement), since only the newer build knows how, and an older
/// one would adopt the table and misread it. An lbd does not adopt pins
/// stamped with an epoch newer than its own.
///
/// - 0: flows placed by the flow hash, a second bucket anywhere in the
///   table (builds before 484d3e7);
/// - 1: IPv6 flows by the table hash, a second bucket anywhere
///   (484d3e7);
/// - 2: a second bucket near the first, in its group of 64 (2e52ed9).
///
/// Builds up to 2 wrote no stamp: pins without one are an older build's
/// (or this build's, stopped before its first swap) and are adopted,
/// their flows re-placed.
pub const FORMAT_EPOCH: u64 = 2;

/// What the pinned stamp says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormatStamp {
    /// No stamp: the pins of a build before stamps (or none at all).
    Missing,
    /// The epoch of the lbd that last swapped its program in on them.
    Epoch(u64),
    /// A stamp this build cannot read (another shape, or a read that
    /// failed): only a newer build could have written it.
    Unreadable(String),
}

/// What this build does with pins of a stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatFit {
    /// Adopt them (as they are, or with older flows re-placed).
    Known,
    /// Not adopted: a newer build's format.
    Newer,
}

impl FormatStamp {
    /// Whether this build may adopt pins of this stamp.
    pub(crate) fn fit(&self) -> FormatFit {
        match self {
            Self::Missing => FormatFit::Known,
            Self::Epoch(epoch) if *epoch <= FORMAT_EPOCH => FormatFit::Known,
            Self::Epoch(_) | Self::Unreadable(_) => FormatFit::Newer,
        }
    }

    /// The stamp as a log names it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Missing => "none (a build before format stamps)".to_owned(),
            Self::Epoch(epoch) => epoch.to_string(),
            Self::Unreadable(why) => format!("unreadable ({why})"),
        }
    }
}

impl PinDir {
    /// Where the format stamp is pinned.
    pub(crate) fn format_path(&self) -> PathBuf {
        self.maps_dir().join(FORMAT_PIN)
    }

    /// The pinned format stamp (see [`FormatStamp`]).
    pub(crate) fn format_stamp(&self) -> FormatStamp {
        read_stamp(&self.format_path())
    }

    /// Pins this build's stamp ([`FORMAT_EPOCH`]) in place of the one
    /// there: a new map pinned beside it, then renamed over it, so there
    /// is never a moment without one. Called once this lbd's program runs
    /// on the pins (`Dataplane::promote_staged`): until then the stamp
    /// stays the previous lbd's, whose program still reads them.
    pub(crate) fn write_format_stamp(&self) -> Result<(), PinError> {
        self.write_format_epoch(FORMAT_EPOCH)
    }

    /// [`write_format_stamp`](Self::write_format_stamp) with `epoch` (tests
    /// stand for another build's).
    pub(crate) fn write_format_epoch(&self, epoch: u64) -> Result<(), PinError> {
        let path = self.format_path();
        // (bpffs refuses names with a dot.)
        let next = self.maps_dir().join(format!("{FORMAT_PIN}_NEXT"));
        let io = |action: &'static str, path: &Path, e: &dyn std::error::Error| PinError::Io {
            action,
            path: path.to_owned(),
            source: std::io::Error::other(super::error_chain(e)),
        };
        let mut stamp = Array::<MapData, u64>::create(FORMAT_SLOTS, 0)
            .map_err(|e| io("creating the format stamp for", &path, &e))?;
        stamp
            .set(0, epoch, 0)
            .map_err(|e| io("writing the format stamp for", &path, &e))?;
        super::remove_file(&next)?;
        stamp
            .pin(&next)
            .map_err(|e| io("pinning the format stamp at", &next, &e))?;
        std::fs::rename(&next, &path).map_err(|source| PinError::Io {
            action: "putting the format stamp in place at",
            path,
            source,
        })
    }
}

/// The stamp pinned at `path`.
fn read_stamp(path: &Path) -> FormatStamp {
    if !path.exists() {
        return FormatStamp::Missing;
    }
    let info = match MapInfo::from_pin(path) {
        Ok(info) => info,
        Err(e) => return FormatStamp::Unreadable(format!("opening: {}", super::error_chain(&e))),
    };
    let shape = (
        info.map_type().ok(),
        info.key_size(),
        info.value_size(),
        info.max_entries(),
    );
    if !matches!(shape, (Some(MapType::Array), 4, 8, 1..)) {
        return FormatStamp::Unreadable(format!(
            "a map of type {:?}, key {} bytes, value {} bytes, {} entries",
            shape.0, shape.1, shape.2, shape.3
        ));
    }
    let read = MapData::from_pin(path)
        .and_then(|data| Array::<MapData, u64>::try_from(Map::Array(data)))
        .and_then(|stamp| stamp.get(&0, 0));
    match read {
        Ok(epoch) => FormatStamp::Epoch(epoch),
        Err(e) => FormatStamp::Unreadable(format!("reading: {}", super::error_chain(&e))),
    }
}

/// Whether a layout directory of another version is older or newer than
/// this build's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayoutAge {
    /// A lower `LAYOUT_VERSION`: an older build's.
    Older,
    /// A higher one: a newer build's (this is a downgrade).
    Newer,
}

impl LayoutAge {
    /// Of layout `version`, relative to this build's (None: this build's).
    pub(crate) fn of(version: u32) -> Option<Self> {
        match version.cmp(&LAYOUT_VERSION) {
            std::cmp::Ordering::Less => Some(Self::Older),
            std::cmp::Ordering::Greater => Some(Self::Newer),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// As a log says it.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Older => "older",
            Self::Newer => "newer",
        }
    }
}

/// A layout directory of another version, with maps in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OtherLayout {
    /// `maps-v<version>`.
    pub(crate) dir: PathBuf,
    /// Its layout version.
    pub(crate) version: u32,
    /// Relative to this build's.
    pub(crate) age: LayoutAge,
}

/// The layout version a layout directory's name (`maps-v<N>`, or its
/// staging directory `maps-v<N>-staged`) says.
pub(crate) fn layout_version_of(name: &str) -> Option<u32> {
    let name = name.strip_suffix("-staged").unwrap_or(name);
    super::is_layout_dir(name)
        .then(|| name.strip_prefix("maps-v")?.parse().ok())
        .flatten()
}

impl PinDir {
    /// The layout directories of other versions that hold pins (not
    /// their staging directories), by version: what another build left.
    pub(crate) fn other_layouts(&self) -> Vec<OtherLayout> {
        let Ok(entries) = std::fs::read_dir(self.root()) else {
            return Vec::new();
        };
        let mut found: Vec<OtherLayout> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if name.ends_with("-staged") {
                    return None;
                }
                let version = layout_version_of(&name)?;
                let age = LayoutAge::of(version)?;
                let dir = entry.path();
                let holds_pins = std::fs::read_dir(&dir).ok()?.next().is_some();
                holds_pins.then_some(OtherLayout { dir, version, age })
            })
            .collect();
        found.sort_by_key(|layout| layout.version);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    #[test]
    fn a_stamp_newer_than_this_build_is_not_adopted() {
        assert_eq!(FormatStamp::Missing.fit(), FormatFit::Known);
        for epoch in 0..=FORMAT_EPOCH {
            assert_eq!(FormatStamp::Epoch(epoch).fit(), FormatFit::Known, "{epoch}");
        }
        assert_eq!(FormatStamp::Epoch(FORMAT_EPOCH + 1).fit(), FormatFit::Newer);
        assert_eq!(
            FormatStamp::Unreadable("a hash map".into()).fit(),
            FormatFit::Newer
        );
    }

    #[test]
    fn layout_directories_are_told_older_or_newer() {
        assert_eq!(layout_version_of("maps-v7"), Some(7));
        assert_eq!(layout_version_of("maps-v7-staged"), Some(7));
        assert_eq!(layout_version_of("maps-vendor"), None);
        assert_eq!(layout_version_of("FORMAT"), None);
        assert_eq!(LayoutAge::of(LAYOUT_VERSION), None);
        assert_eq!(LayoutAge::of(LAYOUT_VERSION + 1), Some(LayoutAge::Newer));
        assert_eq!(LayoutAge::of(0), Some(LayoutAge::Older));

        let scratch = ScratchDir::new("other-layouts");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let newer = root.join(format!("maps-v{}", LAYOUT_VERSION + 1));
        let older = root.join("maps-v0");
        let empty = root.join(format!("maps-v{}", LAYOUT_VERSION + 2));
        for dir in [&newer, &older, &empty, &pins.maps_dir(), &pins.staged_dir()] {
            std::fs::create_dir_all(dir).expect("a layout directory");
        }
        for pin in [
            newer.join("VIPS"),
            older.join("VIPS"),
            pins.map_path("VIPS"),
        ] {
            std::fs::write(pin, b"").expect("a pin");
        }
        let found = pins.other_layouts();
        assert_eq!(
            found,
            vec![
                OtherLayout {
                    dir: older,
                    version: 0,
                    age: LayoutAge::Older
                },
                OtherLayout {
                    dir: newer,
                    version: LAYOUT_VERSION + 1,
                    age: LayoutAge::Newer
                },
            ]
        );
    }
}
