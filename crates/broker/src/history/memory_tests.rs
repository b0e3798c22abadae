//! Unit tests of the in-memory history: every bound, the gap and complete cases, sequence
//! reads, the per-item overhead, and a model-based property test.

use std::time::Duration;

use bytes::Bytes;
use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};
use proptest::prelude::*;

use super::*;

fn msg(channel: &str, id: Option<&str>, payload: usize) -> Arc<Message> {
    Message::new(Item {
        channel: channel.into(),
        id: id.map(Into::into),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::from(vec![b'x'; payload])),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    })
}

fn name(s: &str) -> ChannelName {
    Arc::from(s)
}

fn config(max_items: usize, max_age_secs: u64, max_bytes: usize) -> HistoryConfig {
    HistoryConfig {
        max_items,
        max_age: Duration::from_secs(max_age_secs),
        max_bytes,
    }
}

fn ids(r: &Recovery) -> Vec<&str> {
    r.items.iter().map(|k| k.msg.id().unwrap_or("-")).collect()
}

fn push(core: &mut MemoryCore, channel: &str, id: &str, now: Instant) -> Appended {
    core.append(&name(channel), &[msg(channel, Some(id), 10)], now)
}

#[test]
fn count_bound_keeps_the_newest_and_reports_a_gap_before_them() {
    let t = Instant::now();
    let mut h = MemoryCore::new(config(3, 120, usize::MAX), 1, t);
    for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        assert_eq!(push(&mut h, "ch", id, t).last_seq, Some(i as u64 + 1));
    }
    assert_eq!(h.len(), 3);
    assert_eq!(h.stats().evicted_count, 2);
    let all = h.read_after("ch", After::Start, 100, t);
    assert_eq!((all.reach, ids(&all)), (Reach::Gap, vec!["c", "d", "e"]));
    assert_eq!(
        all.items.iter().map(|k| k.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    let r = h.read_after("ch", After::Id("a"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["c", "d", "e"]));
    let r = h.read_after("ch", After::Id("c"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["d", "e"]));
    let r = h.read_after("ch", After::Id("e"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec![]));
}

#[test]
fn an_id_never_kept_on_a_complete_channel_gets_everything() {
    let t = Instant::now();
    let mut h = MemoryCore::new(HistoryConfig::default(), 1, t);
    push(&mut h, "ch", "a", t);
    push(&mut h, "ch", "b", t);
    let r = h.read_after("ch", After::Id("from-before-the-restart"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Complete, vec!["a", "b"]));
    let r = h.read_after("other", After::Id("x"), 100, t);
    assert_eq!((r.reach, r.items.len()), (Reach::Complete, 0));
    let r = h.read_after("ch", After::Start, 100, t);
    assert_eq!(r.reach, Reach::Complete);
}

#[test]
fn age_bound_then_last_id_then_forgetting() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut h = MemoryCore::new(config(100, 10, usize::MAX), 1, t0);
    push(&mut h, "ch", "a", t0);
    push(&mut h, "ch", "b", t0 + s(5));
    let r = h.read_after("ch", After::Id("a"), 100, t0 + s(9));
    assert_eq!(
        (r.reach, ids(&r)),
        (Reach::After, vec!["b"]),
        "a kept at 9 s"
    );
    let r = h.read_after("ch", After::Id("zz"), 100, t0 + s(11));
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["b"]), "a aged out");
    assert_eq!(h.stats().evicted_age, 1);
    // b ages out: the channel keeps its last id, so a client that saw b missed nothing
    let t = t0 + s(16);
    let r = h.read_after("ch", After::Id("b"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec![]));
    let r = h.read_after("ch", After::Id("a"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec![]));
    assert_eq!((h.len(), h.stats().channels), (0, 1));
    // another max_age later the channel is forgotten: now nothing can be said
    let t = t0 + s(27);
    let r = h.read_after("ch", After::Id("b"), 100, t);
    assert_eq!(r.reach, Reach::Gap);
    let r = h.read_after("never-seen", After::Id("x"), 100, t);
    assert_eq!(
        r.reach,
        Reach::Gap,
        "a forgotten channel may be any channel"
    );
    assert_eq!(h.stats().forgotten_channels, 1);
    assert_eq!(h.stats().channels, 0);
    assert_eq!(h.bytes(), 0);
    // a channel that comes back after forgetting is not complete either
    push(&mut h, "ch", "c", t);
    let r = h.read_after("ch", After::Id("b"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["c"]));
}

#[test]
fn expire_alone_frees_quiet_channels() {
    let t0 = Instant::now();
    let mut h = MemoryCore::new(config(100, 10, usize::MAX), 1, t0);
    for c in 0..100 {
        push(&mut h, &format!("c{c}"), "a", t0);
    }
    h.expire(t0 + Duration::from_secs(10));
    assert_eq!(h.len(), 0);
    h.expire(t0 + Duration::from_secs(20));
    assert_eq!((h.stats().channels, h.bytes()), (0, 0));
}

#[test]
fn byte_bound_evicts_oldest_first_across_channels() {
    let t = Instant::now();
    let one = msg("a", Some("x"), 1000).cost() + ITEM_OVERHEAD;
    let channel = CHANNEL_OVERHEAD + 2 * 16 + 1;
    let max = 2 * channel + 10 * one;
    let mut h = MemoryCore::new(config(100, 120, max), 1, t);
    let (a, b) = (name("a"), name("b"));
    for i in 0..8 {
        h.append(&a, &[msg("a", Some(&format!("a{i}")), 1000)], t);
    }
    for i in 0..8 {
        h.append(&b, &[msg("b", Some(&format!("b{i}")), 1000)], t);
        assert!(h.bytes() <= max, "{} > {max}", h.bytes());
    }
    assert_eq!(h.len(), 10);
    assert_eq!(h.stats().evicted_bytes, 6);
    let r = h.read_after("a", After::Start, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["a6", "a7"]));
    let r = h.read_after("b", After::Start, 100, t);
    assert_eq!((r.reach, r.items.len()), (Reach::Complete, 8));
    // a message larger than the whole bound is not kept, and the channel says so
    h.append(&b, &[msg("b", Some("huge"), max)], t);
    assert!(h.bytes() <= max);
    let r = h.read_after("b", After::Id("b7"), 100, t);
    assert_eq!(r.reach, Reach::Gap, "huge was dropped");
}

#[test]
fn items_without_id_are_not_kept_and_do_not_break_the_chain() {
    let t = Instant::now();
    let mut h = MemoryCore::new(HistoryConfig::default(), 1, t);
    let c = name("c");
    let out = h.append(
        &c,
        &[
            msg("c", Some("a"), 1),
            msg("c", None, 1),
            msg("c", Some("b"), 1),
        ],
        t,
    );
    assert_eq!(
        out,
        Appended {
            kept: 2,
            last_seq: Some(2)
        }
    );
    let r = h.read_after("c", After::Id("a"), 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["b"]));
    assert_eq!(h.append(&c, &[msg("c", None, 1)], t), Appended::default());
}

#[test]
fn sequence_reads_hold_within_an_epoch_only() {
    let t = Instant::now();
    let mut h = MemoryCore::new(config(3, 120, usize::MAX), 7, t);
    for id in ["a", "b", "c"] {
        push(&mut h, "ch", id, t);
    }
    let epoch = h.read_after("ch", After::Start, 0, t).epoch;
    let r = h.read_after("ch", After::Seq { epoch, seq: 1 }, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["b", "c"]));
    let r = h.read_after("ch", After::Seq { epoch, seq: 0 }, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["a", "b", "c"]));
    let r = h.read_after("ch", After::Seq { epoch, seq: 3 }, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec![]));
    let r = h.read_after(
        "ch",
        After::Seq {
            epoch: epoch + 1,
            seq: 1,
        },
        100,
        t,
    );
    assert_eq!(
        (r.reach, r.items.len()),
        (Reach::Complete, 3),
        "other epoch"
    );
    push(&mut h, "ch", "d", t);
    push(&mut h, "ch", "e", t);
    let r = h.read_after("ch", After::Seq { epoch, seq: 1 }, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["c", "d", "e"]));
    let r = h.read_after("ch", After::Seq { epoch, seq: 2 }, 100, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["c", "d", "e"]));
}

#[test]
fn limit_pages_and_last_is_the_newest() {
    let t = Instant::now();
    let mut h = MemoryCore::new(HistoryConfig::default(), 1, t);
    for i in 0..10 {
        push(&mut h, "ch", &format!("i{i}"), t);
    }
    let r = h.read_after("ch", After::Id("i2"), 3, t);
    assert_eq!((ids(&r), r.more), (vec!["i3", "i4", "i5"], true));
    let r = h.read_after("ch", After::Id("i5"), 4, t);
    assert_eq!((ids(&r), r.more), (vec!["i6", "i7", "i8", "i9"], false));
    let last = h
        .last("ch", t)
        .map(|k| (k.seq, k.msg.id().map(Arc::<str>::from)));
    assert_eq!(last, Some((10, Some(Arc::from("i9")))));
    assert!(h.last("nope", t).is_none());
}

#[test]
fn zero_items_keeps_nothing() {
    let t = Instant::now();
    let mut h = MemoryCore::new(config(0, 120, usize::MAX), 1, t);
    push(&mut h, "ch", "a", t);
    assert_eq!((h.len(), h.bytes(), h.stats().channels), (0, 0, 0));
}

/// The store's own memory per kept item: its channel slot and its order entry (20 bytes),
/// plus the queues' spare capacity; counted from the structures' real capacities in a
/// steady state of 1,000 channels at their count bound, after churn.
#[test]
fn overhead_per_item_is_within_96_bytes() {
    assert_eq!(std::mem::size_of::<Slot>(), 8);
    assert_eq!(std::mem::size_of::<Order>(), 12);
    let fixed = std::mem::size_of::<Slot>() + std::mem::size_of::<Order>();
    assert_eq!(fixed, 20, "per item without spare capacity");
    const { assert!(ITEM_OVERHEAD <= 96) };

    let t = Instant::now();
    let mut h = MemoryCore::new(HistoryConfig::default(), 1, t);
    let names: Vec<ChannelName> = (0..1000).map(|i| name(&format!("ch{i}"))).collect();
    let m = msg("x", Some("id"), 10);
    for _round in 0..150 {
        for c in &names {
            h.append(c, std::slice::from_ref(&m), t);
        }
    }
    assert_eq!(h.len(), 100_000);
    let (slots, order) = h.structure_bytes();
    let per_item = (slots + order) as f64 / h.len() as f64;
    eprintln!(
        "history overhead per kept item: {per_item:.1} bytes (slots {:.1}, order {:.1}); charged {ITEM_OVERHEAD}",
        slots as f64 / h.len() as f64,
        order as f64 / h.len() as f64
    );
    eprintln!(
        "Message itself: {} bytes inline, cost() of a 10-byte stream item with a 2-byte id: {}",
        std::mem::size_of::<Message>(),
        m.cost()
    );
    assert!(per_item <= ITEM_OVERHEAD as f64, "{per_item}");
    // a channel's queue stops at its bound and one; the order queue stays near the live
    // entries (its front's tombstones go on every append)
    assert!(per_item <= 25.0, "{per_item}");
    assert!(per_item <= 96.0, "{per_item}");
}

#[test]
fn tombstones_from_count_evictions_stay_bounded() {
    let t = Instant::now();
    let mut h = MemoryCore::new(config(2, 120, usize::MAX), 1, t);
    for i in 0..100_000 {
        push(&mut h, "ch", &i.to_string(), t);
    }
    assert!(h.order.len() <= 2 * 3 + 64, "{}", h.order.len());
    let r = h.read_after("ch", After::Id("99998"), 10, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["99999"]));
}

#[tokio::test]
async fn the_shared_store_answers_through_the_trait() {
    let h = MemoryHistory::new(HistoryConfig::default(), 4);
    let t = Instant::now();
    for c in ["a", "b", "c"] {
        let out = h
            .append(&name(c), &[msg(c, Some("1"), 5), msg(c, Some("2"), 5)], t)
            .await;
        assert_eq!(out.ok().and_then(|a| a.last_seq), Some(2));
    }
    let r = h.read_after("b", After::Id("1"), 10, t).await;
    assert_eq!(
        r.ok().map(|r| (r.reach, r.items.len())),
        Some((Reach::After, 1))
    );
    let last = h.last("c", t).await.ok().flatten().map(|k| k.seq);
    assert_eq!(last, Some(2));
    h.expire(t).await;
    let s = h.stats();
    assert_eq!((s.channels, s.items, s.evictions()), (3, 6, 0));
}

proptest! {
    /// Against a plain model (every appended id per channel, in order): whatever is kept is
    /// a suffix of the channel's items with dense sequence numbers; a read after a kept id
    /// returns exactly the kept items after it; every bound holds after every append; and
    /// kept plus evicted is what was appended.
    #[test]
    fn kept_items_are_a_bounded_suffix(
        ops in prop::collection::vec((0u8..4, 0usize..300, 0u64..3), 1..300),
        max_items in 1usize..8,
        max_bytes in 1_000usize..20_000,
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut h = MemoryCore::new(config(max_items, 5, max_bytes), 1, t0);
        let mut model: Vec<Vec<String>> = vec![Vec::new(); 4];
        for (n, (c, payload, dt)) in ops.into_iter().enumerate() {
            now += Duration::from_secs(dt);
            let ch = format!("c{c}");
            let id = format!("i{n}");
            h.append(&name(&ch), &[msg(&ch, Some(&id), payload)], now);
            model[c as usize].push(id);
            let appended = n as u64 + 1;
            prop_assert!(h.bytes() <= max_bytes);
            let s = h.stats();
            prop_assert_eq!(s.items + s.evictions(), appended);
            for (c, all) in model.iter().enumerate() {
                let ch = format!("c{c}");
                let kept = h.read_after(&ch, After::Start, usize::MAX, now);
                prop_assert!(kept.items.len() <= max_items);
                let kept_ids = ids(&kept);
                prop_assert!(all.ends_with(&kept_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
                for w in kept.items.windows(2) {
                    prop_assert_eq!(w[0].seq + 1, w[1].seq);
                }
                for (i, id) in kept_ids.iter().enumerate() {
                    let r = h.read_after(&ch, After::Id(id), usize::MAX, now);
                    prop_assert_eq!(r.reach, Reach::After);
                    prop_assert_eq!(ids(&r), kept_ids[i + 1..].to_vec());
                }
                if let Some(last) = all.last() {
                    let r = h.read_after(&ch, After::Id(last), usize::MAX, now);
                    if r.reach != Reach::Gap {
                        prop_assert_eq!(r.reach, Reach::After);
                        prop_assert!(r.items.is_empty());
                    }
                }
                if all.len() > 1 && kept_ids.len() < all.len() {
                    let r = h.read_after(&ch, After::Id(&all[0]), usize::MAX, now);
                    if all.len() - kept_ids.len() > 1 {
                        prop_assert_eq!(r.reach, Reach::Gap, "items after {} were dropped", &all[0]);
                    } else if r.reach == Reach::After {
                        // only all[0] was dropped: a reader that has it missed nothing
                        prop_assert_eq!(ids(&r), kept_ids.clone());
                    } else {
                        prop_assert_eq!(r.reach, Reach::Gap);
                    }
                }
            }
        }
    }
}

#[test]
fn the_id_just_before_the_oldest_kept_is_not_a_gap() {
    // a reader exactly max_items behind missed nothing that was dropped
    let mut core = MemoryCore::new(config(3, 120, 1 << 20), 1, Instant::now());
    let now = Instant::now();
    for n in 0..6 {
        push(&mut core, "c", &format!("i{n}"), now);
    }
    let r = core.read_after("c", After::Id("i2"), 10, now);
    assert_eq!(r.reach, Reach::After);
    assert_eq!(ids(&r), ["i3", "i4", "i5"]);
    assert_eq!(
        core.read_after("c", After::Id("i1"), 10, now).reach,
        Reach::Gap
    );
}

#[test]
fn times_past_the_32_bit_tick_range_still_age_items_out_in_order() {
    // ticks rebase once they reach 2^31 ms (about 25 days after the core began)
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut h = MemoryCore::new(config(100, 10, usize::MAX), 1, t0);
    let late = t0 + ms((1 << 31) - 5);
    push(&mut h, "ch", "a", late);
    push(&mut h, "ch", "b", late + ms(10)); // past 2^31: the base moves
    assert!(h.tick_base > 0, "rebased");
    let r = h.read_after("ch", After::Start, 100, late + ms(9_999));
    assert_eq!(ids(&r), ["a", "b"]);
    let r = h.read_after("ch", After::Start, 100, late + ms(10_001));
    assert_eq!(ids(&r), ["b"], "a is 10 s old");
    let r = h.read_after("ch", After::Id("a"), 100, late + ms(10_009));
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["b"]));
    let r = h.read_after("ch", After::Start, 100, late + ms(10_011));
    assert!(ids(&r).is_empty(), "b is 10 s old");
    // a max_age past 2^30 ms counts in coarser ticks, still within one tick
    let long = MemoryCore::new(config(1, 30 * 86_400, usize::MAX), 1, t0);
    assert_eq!(long.tick_ms, 3);
}

#[test]
fn sequences_across_2_pow_31_keep_their_order_and_tombstones() {
    // order entries hold sequences modulo 2^31; a restored channel may start anywhere
    let t = Instant::now();
    let mut h = MemoryCore::new(config(3, 120, usize::MAX), 7, t);
    let start = (1u64 << 31) - 4;
    let state = restore::ChannelState {
        gen: 0,
        first_seq: start,
        next_seq: start,
        truncated: false,
        last_id: None,
        emptied_at: 0,
    };
    h.ensure_channel(&name("ch"), &state);
    for n in 0..10u64 {
        let a = push(&mut h, "ch", &format!("i{n}"), t);
        assert_eq!(a.last_seq, Some(start + n));
    }
    let r = h.read_after("ch", After::Start, 100, t);
    assert_eq!(ids(&r), ["i7", "i8", "i9"]);
    assert_eq!(r.items[0].seq, start + 7);
    let epoch = r.epoch;
    let r = h.read_after(
        "ch",
        After::Seq {
            epoch,
            seq: start + 7,
        },
        100,
        t,
    );
    assert_eq!(ids(&r), ["i8", "i9"]);
    // the 7 count evictions left tombstones; the live entries are the last 3
    let live = h.order.iter().filter(|e| h.is_live(**e)).count();
    assert_eq!(live, 3);
    // everything ages out in order, then the channel is forgotten
    let later = t + Duration::from_secs(121);
    let r = h.read_after("ch", After::Id("i9"), 100, later);
    assert_eq!((r.reach, h.len()), (Reach::After, 0), "i9 is the last id");
    h.expire(later + Duration::from_secs(121));
    assert_eq!(h.stats().channels, 0);
}

#[test]
fn the_newest_dropped_id_is_a_resume_point_after_the_channel_empties() {
    let t = Instant::now();
    let mut h = MemoryCore::new(config(2, 10, usize::MAX), 1, t);
    for id in ["a", "b", "c"] {
        push(&mut h, "ch", id, t);
    }
    // a is the newest dropped: a reader that has it missed nothing still kept
    let r = h.read_after("ch", After::Id("a"), 10, t);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["b", "c"]));
    assert_eq!(h.read_after("ch", After::Id("zz"), 10, t).reach, Reach::Gap);
    let later = t + Duration::from_secs(11);
    let r = h.read_after("ch", After::Id("c"), 10, later);
    assert_eq!((r.reach, ids(&r)), (Reach::After, vec![]), "c was the last");
    assert!(h.contains_id("ch", "c"));
    assert_eq!(
        h.channel_state("ch").and_then(|s| s.last_id).as_deref(),
        Some("c")
    );
}
