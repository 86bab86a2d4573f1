//! The maps another layout version pinned (an upgrade or a downgrade
//! across a `LAYOUT_VERSION` change): what the operator is told when they
//! are found instead of this build's, and when they are removed.

use tracing::warn;

use crate::pinning::{layout_version_of, LayoutAge, PinDir, LAYOUT_VERSION};

/// Says, at warn level, that the pins of this build's layout directory
/// are missing while another layout version's are there (an upgrade or a
/// downgrade across a `LAYOUT_VERSION` change): nothing is adopted, and
/// the operator should know what that costs and which build left them.
pub(super) fn warn_other_layouts(pins: &PinDir) {
    for other in pins.other_layouts() {
        let release = match other.age {
            LayoutAge::Older => "an older release",
            LayoutAge::Newer => "a newer release (a downgrade)",
        };
        warn!(
            found = %other.dir.display(),
            found_layout = other.version,
            this_layout = LAYOUT_VERSION,
            "the pinned data plane is in another layout, {} ({release}), not this build's {LAYOUT_VERSION}: not adopted. The connection table is started afresh (flows re-placed by Maglev, those whose backend is not Maglev's pick now are reset), NAT'd connections are lost, VRRP will not resume (the peer takes over), backends start as up; those maps are removed once this lbd's program runs",
            other.age.word()
        );
    }
}

/// Which releases pinned the maps `removed` (paths in layout directories),
/// as a log says it: "an older release", "a newer release", or both, each
/// with its layout versions.
pub(super) fn releases_of(removed: &[std::path::PathBuf]) -> String {
    let mut versions: Vec<u32> = removed
        .iter()
        .filter_map(|path| {
            let dir = path.parent()?.file_name()?.to_str()?;
            layout_version_of(dir)
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let of = |age: LayoutAge| -> Vec<String> {
        versions
            .iter()
            .filter(|v| LayoutAge::of(**v) == Some(age))
            .map(|v| format!("v{v}"))
            .collect()
    };
    let said: Vec<String> = [LayoutAge::Older, LayoutAge::Newer]
        .into_iter()
        .filter_map(|age| {
            let layouts = of(age);
            (!layouts.is_empty()).then(|| {
                format!(
                    "{} release ({} layout {})",
                    if age == LayoutAge::Older {
                        "an older"
                    } else {
                        "a newer"
                    },
                    age.word(),
                    layouts.join(", ")
                )
            })
        })
        .collect();
    if said.is_empty() {
        "another release".to_owned()
    } else {
        said.join(" and ")
    }
}
