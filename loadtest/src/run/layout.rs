//! Where the users go: room sizes, which users send, stall or drop, and how they are dealt over the worker
//! processes and the gateways, ending in each worker's plan.

use super::args::{RoomSizes, RunArgs, Settings};
use crate::plan::{Schedule, UserPlan, WorkerPlan};
use crate::setup::User;

/// Room sizes for `users` over `rooms`: every room gets at least one user, and the sizes add up to `users`.
pub fn room_sizes(users: usize, rooms: usize, spread: RoomSizes) -> Vec<usize> {
    let weights: Vec<f64> = (0..rooms)
        .map(|i| match spread {
            RoomSizes::Uniform => 1.0,
            RoomSizes::Zipf(s) => 1.0 / ((i + 1) as f64).powf(s),
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let spare = users - rooms;
    let shares: Vec<f64> = weights.iter().map(|w| spare as f64 * w / total).collect();
    let mut sizes: Vec<usize> = shares.iter().map(|s| 1 + s.floor() as usize).collect();
    let mut left = users - sizes.iter().sum::<usize>();
    // Hand out the rounding remainder to the rooms with the largest fractions.
    let mut order: Vec<usize> = (0..rooms).collect();
    order.sort_by(|a, b| (shares[*b].fract()).total_cmp(&shares[*a].fract()));
    for i in order {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    sizes
}

/// Whether user `i` is one of the `share` that drop mid-run: spread evenly by the golden ratio.
fn drops(i: usize, share: f64) -> bool {
    (i as f64 * 0.618_033_988_75).fract() < share
}

/// Where each user (laid out room by room, `(room, sender)`) runs: its worker and its first gateway. Senders and
/// receivers are each dealt round-robin on their own, so both spread evenly over the workers and the gateways
/// (dealt together, with one sender at the head of each room and even room sizes, every sender would land on the
/// first worker and the first gateway).
fn deal(room_of: &[(usize, bool)], workers: usize, gateways: usize) -> Vec<(usize, usize)> {
    let (mut senders, mut receivers) = (0usize, 0usize);
    room_of
        .iter()
        .map(|(_, sender)| {
            let n = if *sender { &mut senders } else { &mut receivers };
            let placed = (*n % workers.max(1), *n % gateways.max(1));
            *n += 1;
            placed
        })
        .collect()
}

/// Which users (laid out room by room) are slow readers: `count` receivers (or as many as there are), the last
/// member of each room first, then the next to last, and so on, so they spread over the rooms.
fn slow_readers(sizes: &[usize], senders: usize, count: usize) -> Vec<bool> {
    let starts: Vec<usize> = sizes
        .iter()
        .scan(0, |next, size| {
            let start = *next;
            *next += size;
            Some(start)
        })
        .collect();
    let mut slow = vec![false; sizes.iter().sum()];
    let mut picked = 0;
    let deepest = sizes.iter().map(|size| size.saturating_sub(senders)).max().unwrap_or(0);
    for depth in 0..deepest {
        for (room, size) in sizes.iter().enumerate() {
            if picked < count && depth < size.saturating_sub(senders) {
                slow[starts[room] + size - 1 - depth] = true;
                picked += 1;
            }
        }
    }
    slow
}

/// The timing every worker shares.
fn schedule(args: &RunArgs, settings: &Settings, messages_per_sender: u64) -> Schedule {
    let duration_ms = settings.duration.as_millis() as u64;
    Schedule {
        ramp_up_ms: settings.ramp_up.as_millis() as u64,
        connect_concurrency: args.common.connect_concurrency,
        connect_timeout_ms: args.common.connect_timeout.as_millis() as u64,
        duration_ms,
        rate_per_sender: args.load.rate,
        messages_per_sender,
        body_bytes: args.load.size,
        changes_percent: args.load.changes,
        ack_timeout_ms: 10_000,
        drain_timeout_ms: args.common.drain_timeout.as_millis() as u64,
        drop_at_ms: duration_ms / 3,
        drop_for_ms: args.faults.reconnect_after.as_millis() as u64,
        stall_at_ms: duration_ms / 4,
        stall_for_ms: args.faults.slow_for.as_millis() as u64,
    }
}

/// Every worker's plan. Users are laid out room by room, then dealt round-robin to workers and gateways, so every
/// room spans them.
pub(crate) fn plans(
    args: &RunArgs,
    settings: &Settings,
    users: &[User],
    rooms: &[String],
    gateways: &[String],
) -> Vec<WorkerPlan> {
    let sizes = room_sizes(args.load.users, args.load.rooms, args.load.room_sizes);
    let room_of: Vec<(usize, bool)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(room, size)| (0..*size).map(move |k| (room, k < settings.senders)))
        .collect();
    let slow = slow_readers(&sizes, settings.senders, args.faults.slow_readers);
    let senders_total = room_of.iter().filter(|(_, s)| *s).count() as u64;
    let messages_per_sender = match args.load.messages {
        Some(total) => total.div_ceil(senders_total.max(1)),
        None => u64::MAX,
    };
    let schedule = schedule(args, settings, messages_per_sender);
    let mut plans: Vec<WorkerPlan> = (0..settings.workers)
        .map(|worker| WorkerPlan {
            worker,
            gateways: gateways.to_vec(),
            source_addrs: settings.source_addrs.clone(),
            users: Vec::new(),
            schedule: schedule.clone(),
        })
        .collect();
    let placed = deal(&room_of, settings.workers, gateways.len());
    for (i, (user, (room, sender))) in users.iter().zip(&room_of).enumerate() {
        let (worker, gateway) = placed[i];
        plans[worker].users.push(UserPlan {
            name: user.name.clone(),
            token: user.access_token.clone(),
            room: rooms[*room].clone(),
            sender: *sender,
            gateway,
            // A slow reader does not also drop: its drop would come before it read the 4008 waiting for it.
            drops: settings.reconnect_share > 0.0 && drops(i, settings.reconnect_share) && !slow[i],
            stalls: slow[i],
        });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_sizes_add_up_and_keep_every_room() {
        for (users, rooms) in [(10, 3), (1000, 7), (100_000, 1000), (5, 5)] {
            for spread in [RoomSizes::Uniform, RoomSizes::Zipf(1.0), RoomSizes::Zipf(2.5)] {
                let sizes = room_sizes(users, rooms, spread);
                assert_eq!(sizes.len(), rooms);
                assert_eq!(sizes.iter().sum::<usize>(), users, "{users} over {rooms} ({spread:?})");
                assert!(sizes.iter().all(|s| *s >= 1));
            }
        }
        let uniform = room_sizes(1000, 10, RoomSizes::Uniform);
        assert!(uniform.iter().all(|s| *s == 100));
        let zipf = room_sizes(1000, 10, RoomSizes::Zipf(1.0));
        assert!(zipf.windows(2).all(|w| w[0] >= w[1]), "zipf rooms shrink: {zipf:?}");
        assert!(zipf[0] > 3 * zipf[9]);
    }
    #[test]
    fn senders_and_receivers_each_spread_evenly_over_workers_and_gateways() {
        let mut cases = vec![(7, 50, 3, 3, 2)];
        for gateways in [2, 4] {
            for size in [50, 100] {
                for senders in [1, 2] {
                    for workers in [1, 2, 3, 4] {
                        cases.push((8, size, senders, workers, gateways));
                        cases.push((9, size, senders, workers, gateways));
                    }
                }
            }
        }
        for (rooms, size, senders, workers, gateways) in cases {
            let case =
                format!("{rooms} rooms of {size}, {senders} senders each, {workers} workers, {gateways} gateways");
            let room_of: Vec<(usize, bool)> = (0..rooms)
                .flat_map(|room| (0..size).map(move |k| (room, k < senders)))
                .collect();
            let placed = deal(&room_of, workers, gateways);
            for sending in [true, false] {
                let mut per_worker = vec![0usize; workers];
                let mut per_gateway = vec![0usize; gateways];
                for ((_, sender), (worker, gateway)) in room_of.iter().zip(&placed) {
                    if *sender == sending {
                        per_worker[*worker] += 1;
                        per_gateway[*gateway] += 1;
                    }
                }
                // Within one of each other: closer than the one room's worth of senders a fair share allows.
                for counts in [&per_worker, &per_gateway] {
                    let (min, max) = (counts.iter().min(), counts.iter().max());
                    assert!(
                        max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                        "senders {sending}: {counts:?} ({case})"
                    );
                }
                assert!(
                    per_gateway.iter().all(|n| *n > 0),
                    "every gateway has some: {per_gateway:?} ({case})"
                );
            }
            // And every room spans the gateways: its receivers are on each of them.
            for room in 0..rooms {
                let mut on = vec![false; gateways];
                for ((r, sender), (_, gateway)) in room_of.iter().zip(&placed) {
                    if *r == room && !sender {
                        on[*gateway] = true;
                    }
                }
                assert!(
                    on.iter().all(|on| *on),
                    "room {room}'s receivers on every gateway ({case})"
                );
            }
        }
    }

    #[test]
    fn slow_readers_are_receivers_spread_over_the_rooms() {
        let slow = slow_readers(&[4, 4, 3], 1, 4);
        let picked: Vec<usize> = slow.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect();
        // The last member of each room, then the next to last of the first room; never a sender (0, 4, 8).
        assert_eq!(picked, vec![2, 3, 7, 10]);
        assert_eq!(slow_readers(&[2, 2], 2, 3).iter().filter(|s| **s).count(), 0);
        // Uneven rooms: the small ones run out, the big ones go on giving.
        let uneven = slow_readers(&[11, 5, 3, 2, 2, 2, 2, 1, 1, 1], 1, 20);
        assert_eq!(uneven.iter().filter(|s| **s).count(), 20);
        let every_receiver = slow_readers(&[11, 5, 3, 2, 2, 2, 2, 1, 1, 1], 1, 100);
        assert_eq!(every_receiver.iter().filter(|s| **s).count(), 30 - 10);
    }

    #[test]
    fn the_dropping_share_is_close_to_the_share_asked() {
        let dropped = (0..10_000).filter(|i| drops(*i, 0.25)).count();
        assert!((2400..=2600).contains(&dropped), "{dropped}");
        assert_eq!((0..1000).filter(|i| drops(*i, 0.0)).count(), 0);
    }
}
