use std::time::Duration;

use super::ReplayStore;
use crate::conformance::{join_all, unique_name};

const WINDOW: Duration = Duration::from_secs(300);

/// The [`ReplayStore`] conformance suite. Needs no manual clock: every id it
/// uses is fresh and remembered for five minutes.
pub async fn replay_store<S: ReplayStore>(store: &S) {
    the_first_sighting_is_new_and_the_next_a_replay(store).await;
    ids_are_independent(store).await;
    forgotten_ids_are_new_again(store).await;
    concurrent_sightings_of_one_id_have_exactly_one_first(store).await;
    concurrent_sightings_of_many_ids_are_each_first(store).await;
    scopes_keep_their_ids_apart(store).await;
}

const SCOPE: &str = "sender";

async fn check<S: ReplayStore>(store: &S, id: &str) -> bool {
    store
        .check_and_remember(SCOPE, id, WINDOW)
        .await
        .expect("check_and_remember")
}

async fn scopes_keep_their_ids_apart<S: ReplayStore>(store: &S) {
    let id = unique_name("msg");
    let scope = unique_name("tenant");
    assert!(check(store, &id).await);
    assert!(
        store.check_and_remember(&scope, &id, WINDOW).await.expect("check"),
        "the same id in another scope is new"
    );
    assert!(!store.check_and_remember(&scope, &id, WINDOW).await.expect("check"));
    // A scope that is a prefix of another, with the rest moved into the id.
    let (head, tail) = scope.split_at(3);
    assert!(
        store
            .check_and_remember(head, &format!("{tail}{id}"), WINDOW)
            .await
            .expect("check"),
        "scope and id are not simply concatenated"
    );
    store.forget(&scope, &id).await.expect("forget");
    assert!(!check(store, &id).await, "forgetting in one scope leaves the other");
    assert!(store.check_and_remember(&scope, &id, WINDOW).await.expect("check"));
}

async fn the_first_sighting_is_new_and_the_next_a_replay<S: ReplayStore>(store: &S) {
    let id = unique_name("msg");
    assert!(check(store, &id).await, "the first sighting of an id is new");
    assert!(!check(store, &id).await, "the second sighting is a replay");
    assert!(!check(store, &id).await, "and so is the third");
}

async fn ids_are_independent<S: ReplayStore>(store: &S) {
    let first = unique_name("msg");
    let second = unique_name("msg");
    assert!(check(store, &first).await);
    assert!(check(store, &second).await, "another id is new");
    // Ids that share a prefix, or differ only in case, are different ids.
    let upper = first.to_uppercase();
    assert!(check(store, &upper).await, "ids are case-sensitive");
    assert!(check(store, &format!("{first}x")).await, "a longer id is another id");
    assert!(!check(store, &second).await);
}

async fn forgotten_ids_are_new_again<S: ReplayStore>(store: &S) {
    let id = unique_name("msg");
    assert!(check(store, &id).await);
    store.forget(SCOPE, &id).await.expect("forget");
    assert!(check(store, &id).await, "a forgotten id is new again");
    assert!(!check(store, &id).await, "and remembered again");
    store
        .forget(SCOPE, &unique_name("never-seen"))
        .await
        .expect("forgetting an unknown id is not an error");
}

async fn concurrent_sightings_of_one_id_have_exactly_one_first<S: ReplayStore>(store: &S) {
    for _ in 0..5 {
        let id = unique_name("msg");
        let sightings = join_all((0..16).map(|_| store.check_and_remember(SCOPE, &id, WINDOW))).await;
        let firsts = sightings.iter().filter(|sighting| matches!(sighting, Ok(true))).count();
        assert_eq!(firsts, 1, "exactly one concurrent sighting is first: {sightings:?}");
        assert!(sightings.iter().all(Result::is_ok), "no sighting fails: {sightings:?}");
    }
}

async fn concurrent_sightings_of_many_ids_are_each_first<S: ReplayStore>(store: &S) {
    let ids: Vec<String> = (0..16).map(|_| unique_name("msg")).collect();
    let sightings = join_all(ids.iter().map(|id| store.check_and_remember(SCOPE, id, WINDOW))).await;
    assert!(
        sightings.iter().all(|sighting| matches!(sighting, Ok(true))),
        "distinct ids never collide: {sightings:?}"
    );
}
