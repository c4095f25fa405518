//! Two relays on one outbox and two consumers in one group: nothing lost, nothing applied twice,
//! and per-key order kept, including across a relay hand-over.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{World, commit, fast_relay_config};
use test_support::unique;

#[tokio::test]
async fn two_relays_and_two_consumers_deliver_everything_exactly_once_in_key_order() {
    let world = World::new().await;
    let name = unique("c");
    let first_consumer = world.start_consumer(&name);
    let second_consumer = world.start_consumer(&name);

    let mut relays = Vec::new();
    for _ in 0..2 {
        let relay = world.relay_with(fast_relay_config());
        let (trigger, shutdown) = platform::shutdown::channel();
        relays.push((trigger, tokio::spawn(relay.run(shutdown))));
    }

    // One writer, so per key the outbox order is the order of `n`.
    let all = common::messages(2000, 20);
    let mut ids = Vec::new();
    for (i, chunk) in all.chunks(50).enumerate() {
        ids.extend(commit(world.pool(), chunk).await);
        if i == 20 {
            // Half-way, stop one relay: whichever held the lease, the other must carry on.
            let (trigger, task) = relays.remove(0);
            trigger.fire();
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    world
        .assert_applied_exactly_once(&ids, Duration::from_secs(40))
        .await;
    let mut per_key: HashMap<String, Vec<i64>> = HashMap::new();
    for e in world.effects().await {
        per_key.entry(e.key.unwrap()).or_default().push(e.n);
    }
    assert_eq!(per_key.len(), 20);
    for (key, ns) in &per_key {
        let expected: Vec<i64> = (0..ns.len() as i64).collect();
        assert_eq!(ns, &expected, "effects of {key} in publication order");
    }
    let processed = first_consumer.stats.processed() + second_consumer.stats.processed();
    assert_eq!(processed, 2000);

    for (trigger, task) in relays {
        trigger.fire();
        task.await.unwrap();
    }
    first_consumer.stop().await;
    second_consumer.stop().await;
}
