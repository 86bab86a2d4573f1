use lb_common::guard::next_generation;

use super::*;

/// The generation chosen is the marked one before the longest run of
/// marks no flow carries (wrapping past the largest mark), so the
/// next ones stay clear of the flows' marks the longest; none without
/// marked flows, and one already adopted from the maps is kept.
#[test]
fn the_generation_clear_of_marks_follows_the_longest_free_run() {
    use lb_common::guard::acl_mark;
    let marks =
        |generations: &[u32]| -> Vec<u32> { generations.iter().map(|g| acl_mark(*g)).collect() };
    assert_eq!(clear_of_marks([0u32, 3]), None, "no flow marked");
    assert_eq!(clear_of_marks(marks(&[1])), Some(1));
    assert_eq!(clear_of_marks(marks(&[7, 2, 7])), Some(7));
    // Marks of generations past 2^24 are their low 24 bits.
    assert_eq!(clear_of_marks(marks(&[0x0100_0005])), Some(5));
    // A previous lbd whose generations wrapped: past the newest.
    let wrapped = marks(&[0x00ff_fffe, 0x00ff_ffff, 0x0100_0001, 0x0100_0002]);
    assert_eq!(clear_of_marks(wrapped), Some(2));
    // The largest mark's run goes round to the smallest.
    assert_eq!(clear_of_marks(marks(&[0x00ff_ffff, 9])), Some(9));
    assert_eq!(
        clear_of_marks(marks(&[0x0080_0010, 0x0080_0000])),
        Some(0x0080_0010)
    );
    // A run between two marks longer than the one round past the largest.
    assert_eq!(clear_of_marks(marks(&[0x00ff_fff0, 2])), Some(2));
    assert_eq!(next_generation(0x00ff_ffff) & 0x00ff_ffff, 1);
    // The maps' own generation stands.
    let mut installer = Installer {
        generation: 4,
        ..Installer::default()
    };
    assert_eq!(installer.clear_of_marks(marks(&[4, 5])), None);
    assert_eq!(installer.generation, 4);
}
