//! Tests of the connection slots: who gets a free or busy slot, which
//! connection is closed to make room, and when.
use super::*;

const G: Duration = Duration::from_millis(100);
/// The write grace of the tests that are not about it.
const W: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_free_slot_first_then_no_victim_within_the_grace() {
    let t0 = Instant::now();
    let mut table = Table::new(2, G, W);
    let a = table.insert(1, t0).unwrap();
    let _b = table.insert(1, t0 + ms(10)).unwrap();
    assert!(!table.has_room());
    assert_eq!(table.insert(1, t0), None);
    // Nobody has waited the grace yet.
    assert_eq!(table.victim(t0 + ms(50)), None);
    assert_eq!(table.next_evictable(), Some(t0 + G));
    // The longest waiting goes first.
    assert_eq!(table.victim(t0 + ms(120)), Some(Victim::Now(a)));
    table.remove(a);
    assert!(table.has_room());
}

#[test]
fn a_waiting_connection_goes_before_a_busy_one() {
    let t0 = Instant::now();
    let mut table = Table::new(2, G, W);
    let a = table.insert(1, t0).unwrap();
    let b = table.insert(1, t0).unwrap();
    assert!(table.set_busy(a));
    assert_eq!(table.victim(t0 + ms(500)), Some(Victim::Now(b)));
    // Answered: waiting again, with a new grace; within it, the busy
    // one is the victim (after its answer).
    assert!(table.set_busy(b));
    assert!(!table.finish(a, t0 + ms(600)));
    // Writing its answer: not closed, however long that takes (up to
    // the write grace).
    assert_eq!(table.victim(t0 + ms(5000)), Some(Victim::AfterAnswer(b)));
    table.written(a, t0 + ms(6000));
    assert_eq!(table.victim(t0 + ms(6050)), Some(Victim::AfterAnswer(b)));
    assert_eq!(table.victim(t0 + ms(6100)), Some(Victim::Now(a)));
}

#[test]
fn when_every_slot_is_busy_the_longest_held_closes_after_its_answer() {
    let t0 = Instant::now();
    let mut table = Table::new(3, G, W);
    // Root's connection is the oldest, but 198.18.0.1 holds two.
    let root = table.insert(0, t0).unwrap();
    let old = table.insert(1, t0 + ms(1)).unwrap();
    let new = table.insert(1, t0 + ms(2)).unwrap();
    for id in [root, old, new] {
        assert!(table.set_busy(id));
    }
    assert_eq!(table.next_evictable(), None);
    let now = t0 + ms(5);
    assert_eq!(table.victim(now), Some(Victim::AfterAnswer(old)));
    table.set_closing(old);
    // One at a time: nobody else while that one answers.
    assert_eq!(table.victim(now), None);
    // Its answer is ready, with word to close; it takes no next request.
    assert!(table.finish(old, t0 + ms(10)));
    assert!(!table.set_busy(old));
    // While the answer goes out it is not cut, past the grace too.
    assert_eq!(table.victim(t0 + ms(20)), None);
    assert_eq!(table.victim(t0 + ms(5000)), None);
    assert_eq!(table.next_evictable(), Some(t0 + ms(10) + W));
    // Out: a client that does not close is closed after the grace.
    table.written(old, t0 + ms(5010));
    assert_eq!(table.victim(t0 + ms(5050)), None);
    assert_eq!(table.victim(t0 + ms(5110)), Some(Victim::Now(old)));
    table.remove(old);
    // Another connection's answer carries no such word.
    assert!(!table.finish(new, t0 + ms(120)));
    table.written(new, t0 + ms(120));
    assert!(table.set_busy(new));
    assert_eq!(table.victim(t0 + ms(200)), Some(Victim::AfterAnswer(root)));
}

#[test]
fn an_answer_nobody_reads_is_cut_after_the_write_grace() {
    let t0 = Instant::now();
    let mut table = Table::new(1, G, ms(1000));
    let a = table.insert(1, t0).unwrap();
    assert!(table.set_busy(a));
    assert_eq!(table.victim(t0), Some(Victim::AfterAnswer(a)));
    table.set_closing(a);
    assert!(table.finish(a, t0 + ms(10)));
    assert_eq!(table.victim(t0 + ms(1000)), None);
    assert_eq!(table.next_evictable(), Some(t0 + ms(1010)));
    assert_eq!(table.victim(t0 + ms(1010)), Some(Victim::Now(a)));
}

/// While a busy connection is told to close after its answer, no
/// other is chosen (one at a time), and the time to look again is not
/// that of another connection whose grace has ended (it would be
/// past: a wake-up at once, again and again, until the answer is
/// out); while one is being closed there is none.
#[test]
fn while_one_is_closing_the_next_look_waits_for_it() {
    let t0 = Instant::now();
    let mut table = Table::new(2, G, W);
    let a = table.insert(1, t0).unwrap();
    let b = table.insert(1, t0).unwrap();
    assert!(table.set_busy(a));
    assert!(table.set_busy(b));
    assert_eq!(table.victim(t0), Some(Victim::AfterAnswer(a)));
    table.set_closing(a);
    // b answered and waits: its grace ends at 110 ms.
    assert!(!table.finish(b, t0 + ms(5)));
    table.written(b, t0 + ms(10));
    assert_eq!(table.victim(t0 + ms(500)), None, "one at a time");
    assert_eq!(table.next_evictable(), None, "a's answer tells");
    // a's answer goes out: its write grace, then its grace once out.
    assert!(table.finish(a, t0 + ms(600)));
    assert_eq!(table.next_evictable(), Some(t0 + ms(600) + W));
    table.written(a, t0 + ms(700));
    assert_eq!(table.next_evictable(), Some(t0 + ms(700) + G));
    assert_eq!(table.victim(t0 + ms(800)), Some(Victim::Now(a)));
    table.set_evicting(a);
    assert_eq!(table.next_evictable(), None, "its slot freed tells");
    table.remove(a);
    assert_eq!(table.next_evictable(), Some(t0 + ms(10) + G));
}

#[test]
fn the_peer_holding_the_most_slots_loses_one_first() {
    let t0 = Instant::now();
    let mut table = Table::new(4, G, W);
    // Root's connection is the oldest, but uid 1000 holds three.
    let root = table.insert(0, t0).unwrap();
    let first = table.insert(1000, t0 + ms(1)).unwrap();
    table.insert(1000, t0 + ms(2)).unwrap();
    table.insert(1000, t0 + ms(3)).unwrap();
    let now = t0 + ms(200);
    assert_eq!(table.victim(now), Some(Victim::Now(first)));
    // Being closed: one at a time, and it takes no request.
    table.set_evicting(first);
    assert!(table.evicting());
    assert!(!table.set_busy(first), "a connection being closed stays so");
    assert_eq!(table.victim(now), None);
    table.remove(first);
    let Some(Victim::Now(second)) = table.victim(now) else {
        panic!("a waiting victim");
    };
    assert_ne!(second, root);
    table.set_evicting(second);
    table.remove(second);
    // Now one each: the longest waiting.
    assert_eq!(table.victim(now), Some(Victim::Now(root)));
}

#[tokio::test]
async fn a_newcomer_evicts_the_longest_waiting_once_its_grace_is_over() {
    let slots = Slots::new(2, G, W);
    let mut a = slots.admit(7).await;
    let b = slots.admit(7).await;
    let busy = b.handle().try_busy().unwrap();
    // Full; a is within its grace, b busy: a newcomer could be let in
    // (b closing after its answer), but a waiting one goes first once
    // its grace is over.
    let started = Instant::now();
    slots.ready().await;
    tokio::time::sleep_until(started + G).await;
    let admit = slots.admit(8);
    let mut admit = std::pin::pin!(admit);
    // a is told to close; the newcomer waits until it has.
    tokio::select! {
        () = a.evicted() => {}
        _ = &mut admit => panic!("admitted before a slot was freed"),
    }
    drop(a);
    let c = admit.await;
    // b was not told to close: its answer keeps the connection open.
    assert!(!busy.finish());
    assert!(c.handle().try_busy().is_some());
    drop(b);
    let _d = slots.admit(9).await;
}

#[tokio::test]
async fn a_newcomer_gets_in_after_one_answer_when_every_slot_is_busy() {
    let slots = Slots::new(2, G, W);
    let a = slots.admit(7).await;
    let b = slots.admit(7).await;
    let busy_a = a.handle().try_busy().unwrap();
    let busy_b = b.handle().try_busy().unwrap();
    // Every slot busy: a newcomer may be let in at once.
    tokio::time::timeout(Duration::from_secs(5), slots.ready())
        .await
        .expect("ready while every slot is busy");
    let admit = slots.admit(8);
    let mut admit = std::pin::pin!(admit);
    tokio::select! {
        biased;
        _ = &mut admit => panic!("admitted before a slot was freed"),
        () = tokio::task::yield_now() => {}
    }
    // a, the longest held, closes after its answer; b does not.
    assert!(!busy_b.finish());
    assert!(busy_a.finish());
    assert!(
        a.handle().try_busy().is_none(),
        "no request after that answer"
    );
    drop(a);
    let c = tokio::time::timeout(Duration::from_secs(5), admit)
        .await
        .expect("admitted once a's answer was out");
    drop((b, c));
}

/// A newcomer waiting for a busy connection's answer (it closes
/// after it) while another connection has waited past its grace: the
/// wait sleeps until that answer, it does not look again and again.
/// (The next look was set at the other connection's grace end, past:
/// the wait woke at once, taking the lock each time, for as long as
/// the answer took, up to the render timeout: a core spinning, which
/// a client of the metrics port could set up.)
#[tokio::test]
async fn a_newcomer_waiting_for_an_answer_does_not_spin() {
    let slots = Slots::new(2, G, W);
    let a = slots.admit(7).await;
    let b = slots.admit(7).await;
    let busy_a = a.handle().try_busy().unwrap();
    let busy_b = b.handle().try_busy().unwrap();
    let admit = slots.admit(8);
    let mut admit = std::pin::pin!(admit);
    tokio::select! {
        biased;
        _ = &mut admit => panic!("admitted before a slot was freed"),
        () = tokio::task::yield_now() => {}
    }
    // a is told to close after its answer; b has had its answer (no
    // body to write) and waits.
    drop(busy_b);
    let before = slots.shared.passes.load(Ordering::Relaxed);
    tokio::select! {
        _ = &mut admit => panic!("admitted before a slot was freed"),
        () = tokio::time::sleep(G * 4) => {}
    }
    let passes = slots.shared.passes.load(Ordering::Relaxed) - before;
    assert!(
        passes <= 3,
        "{passes} looks in {:?} while nothing changed",
        G * 4
    );
    // a's answer, with word to close: the newcomer takes its slot.
    assert!(busy_a.finish());
    drop(a);
    let c = tokio::time::timeout(Duration::from_secs(5), admit)
        .await
        .expect("admitted once a was gone");
    drop((b, c));
}

#[tokio::test]
async fn a_connection_told_to_close_is_not_cut_while_its_answer_goes_out() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let slots = Slots::new(1, G, W);
    let mut a = slots.admit(7).await;
    // The connection's stream, read by a client that is slow to read.
    let (server, mut client) = tokio::io::duplex(64);
    let mut stream = a.watch(server);
    let busy = a.handle().try_busy().unwrap();
    let admit = slots.admit(8);
    let mut admit = std::pin::pin!(admit);
    tokio::select! {
        biased;
        _ = &mut admit => panic!("admitted before a slot was freed"),
        () = tokio::task::yield_now() => {}
    }
    // Told to close after its answer; the answer (larger than the
    // pipe) goes out.
    assert!(busy.finish());
    let answer = vec![7u8; 4096];
    let writer = tokio::spawn({
        let answer = answer.clone();
        async move {
            stream.write_all(&answer).await?;
            stream.flush().await?;
            Ok::<_, io::Error>(stream)
        }
    });
    // Many graces pass while the client has not read it: the
    // connection is not cut, and the newcomer waits.
    tokio::select! {
        () = a.evicted() => panic!("cut while its answer was going out"),
        _ = &mut admit => panic!("admitted while the answer was going out"),
        () = tokio::time::sleep(G * 5) => {}
    }
    let mut read = vec![0u8; answer.len()];
    client.read_exact(&mut read).await.unwrap();
    assert_eq!(read, answer);
    let _stream = writer.await.unwrap().unwrap();
    // Out: the connection is closed (its client keeps it open) after
    // the grace, and the newcomer takes its slot.
    tokio::select! {
        () = a.evicted() => {}
        _ = &mut admit => panic!("admitted before a slot was freed"),
        () = tokio::time::sleep(Duration::from_secs(5)) => panic!("not closed once its answer was out"),
    }
    drop(a);
    tokio::time::timeout(Duration::from_secs(5), admit)
        .await
        .expect("admitted once a was closed");
}
