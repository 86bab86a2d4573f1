//! Another build's live program (`another_build`): swapped for this
//! build's by an apply, but not by a one-shot apply beside a running
//! lb-decap nor by a running one's re-apply.

use lb_decap::{
    config::Attach,
    dataplane::{self, Applied},
    owner::Ownership,
    pins::PinDir,
};

use crate::fixtures::{map_ids, settings, tcx_ids, Lab};

/// The decap object with every 64-bit `r = imm` (imm >= 0) of its XDP
/// and tc entry points turned into the 32-bit move of the same value (it
/// zero-extends: the same program to the verifier and to packets), so
/// its programs have other instructions and other tags: what another
/// lb-decap build's program looks like to the kernel.
fn another_build() -> Vec<u8> {
    let mut elf = lb_decap::object::DECAP_OBJECT.to_vec();
    let word = |b: &[u8], at: usize, n: usize| {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0usize, |v, byte| (v << 8) | usize::from(*byte))
    };
    let (shoff, shentsize, shnum, shstrndx) = (
        word(&elf, 0x28, 8),
        word(&elf, 0x3a, 2),
        word(&elf, 0x3c, 2),
        word(&elf, 0x3e, 2),
    );
    let header = |i: usize| shoff + i * shentsize;
    let names = word(&elf, header(shstrndx) + 24, 8);
    let mut patched = 0;
    for i in 0..shnum {
        let at = header(i);
        let name_at = names + word(&elf, at, 4);
        let name: Vec<u8> = elf[name_at..]
            .iter()
            .take_while(|b| **b != 0)
            .copied()
            .collect();
        if name != b"xdp" && name != b"classifier" {
            continue;
        }
        let (offset, size) = (word(&elf, at + 24, 8), word(&elf, at + 32, 8));
        let mut insn = offset;
        while insn + 8 <= offset + size {
            // BPF_LD | BPF_IMM | BPF_DW takes two slots.
            if elf[insn] == 0x18 {
                insn += 16;
                continue;
            }
            let imm =
                i32::from_le_bytes([elf[insn + 4], elf[insn + 5], elf[insn + 6], elf[insn + 7]]);
            // BPF_ALU64 | BPF_MOV | BPF_K -> BPF_ALU | BPF_MOV | BPF_K.
            if elf[insn] == 0xb7 && imm >= 0 {
                elf[insn] = 0xb4;
                patched += 1;
            }
            insn += 8;
        }
    }
    assert!(patched > 0, "no instruction to patch");
    elf
}

/// An upgrade: the live link runs another build's program, reading the
/// same pinned maps. `status` says so, and the next apply swaps this
/// build's program into the same link (no gap, one program on the hook)
/// and says it is this build's. Before, the maps were updated in place
/// and the new build's program stayed unused until a cleanup and a start.
#[test]
fn another_builds_program_in_the_live_link_is_swapped_for_this_builds() {
    let lab = Lab::new("upgrade");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let settings = settings("\"198.18.0.100:80/tcp\"");
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        assert_eq!(
            dataplane::apply_object(&settings, &pins, &older).expect("the other build"),
            Applied::Attached
        );
        let first = dataplane::link_program(&link).expect("live link");
        let this_build = dataplane::build_tag(Attach::Tc).expect("this build's tag");
        let first_tag = dataplane::program_tag(first).expect("tag");
        assert_ne!(first_tag, this_build, "the patched object is another build");
        // Applied by that build again: its own program, left alone.
        assert_eq!(
            dataplane::apply_object(&settings, &pins, &older).expect("again"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains(&format!(
                "program: tc on lo is another build's (tag {}, this lb-decap's {})",
                dataplane::format_tag(first_tag),
                dataplane::format_tag(this_build)
            )),
            "{status}"
        );

        assert_eq!(
            dataplane::apply(&settings, &pins).expect("this build"),
            Applied::Attached
        );
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_ne!(second, first, "a new program");
        assert_eq!(dataplane::program_tag(second).expect("tag"), this_build);
        assert_eq!(tcx_ids("lo"), [second], "in the old one's place");
        let (used, pinned) = map_ids(&pins);
        assert!(
            pinned.iter().all(|id| used.contains(id)),
            "{used:?} {pinned:?}"
        );
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("program: tc on lo is this build's (tag "),
            "{status}"
        );
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("again"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(second));
    });
}

/// An upgrade while the old build still runs (`dpkg -i`, then a one-shot
/// `lb-decap apply` of the new binary): the apply beside the running
/// `run` updates the maps but leaves its program in the link, so the
/// swap waits for a restart. Before, the apply swapped the new program
/// in and the old `run`'s next reload swapped its own back.
#[test]
fn a_one_shot_apply_beside_a_running_lb_decap_of_another_build_swaps_nothing() {
    let lab = Lab::new("beside");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        let mut running = Ownership::new();
        assert_eq!(
            dataplane::apply_with(
                &settings("\"198.18.0.100:80/tcp\""),
                &pins,
                &older,
                Some(&mut running)
            )
            .expect("the running build's start"),
            Applied::Attached
        );
        let first = dataplane::link_program(&link).expect("live link");
        assert_eq!(
            dataplane::apply(
                &settings("\"198.18.0.100:80/tcp\", \"198.18.0.101:80/tcp\""),
                &pins
            )
            .expect("this build, beside it"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));
        assert_eq!(tcx_ids("lo"), [first]);
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("198.18.0.101"),
            "the maps updated: {status}"
        );
        assert!(
            status
                .contains("restart lb-decap (systemctl restart lb-decap) to swap this build's in"),
            "{status}"
        );
        // The running one's reload: its own program, left alone.
        assert_eq!(
            dataplane::apply_with(
                &settings("\"198.18.0.100:80/tcp\""),
                &pins,
                &older,
                Some(&mut running)
            )
            .expect("reload"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));

        // Restarted: the new build's start swaps its program in.
        drop(running);
        let mut restarted = Ownership::new();
        assert_eq!(
            dataplane::apply_owned(&settings("\"198.18.0.100:80/tcp\""), &pins, &mut restarted)
                .expect("the new build's start"),
            Applied::Attached
        );
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_eq!(
            dataplane::program_tag(second).expect("tag"),
            dataplane::build_tag(Attach::Tc).expect("this build's tag")
        );
        assert_eq!(tcx_ids("lo"), [second]);
    });
}

/// A running lb-decap whose link got another build's program it did not
/// load (here a one-shot apply of a newer build after a cleanup) leaves
/// it there at its reloads and watch re-applies, updating the maps: it
/// swaps only at its start. Before, an old binary still running put its
/// own program back over the new one.
#[test]
fn a_running_lb_decap_does_not_swap_its_program_over_another_builds_on_reapply() {
    let lab = Lab::new("reapply");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        let mut running = Ownership::new();
        let vip = settings("\"198.18.0.100:80/tcp\"");
        assert_eq!(
            dataplane::apply_with(&vip, &pins, &older, Some(&mut running)).expect("start"),
            Applied::Attached
        );
        dataplane::cleanup(&pins).expect("cleanup");
        assert_eq!(
            dataplane::apply(&vip, &pins).expect("the newer build, nobody holding"),
            Applied::Attached
        );
        let newer = dataplane::link_program(&link).expect("live link");
        let two = settings("\"198.18.0.100:80/tcp\", \"198.18.0.101:80/tcp\"");
        assert_eq!(
            dataplane::apply_with(&two, &pins, &older, Some(&mut running)).expect("reload"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(newer));
        assert_eq!(tcx_ids("lo"), [newer]);
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("198.18.0.101"),
            "the maps updated: {status}"
        );
        assert_eq!(running.interfaces(), ["lo"], "still held");
    });
}
