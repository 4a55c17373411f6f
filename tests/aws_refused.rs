//! What a policy refusal at the data endpoint looks like from the commands: AWS's 403 body
//! carries no `clientToken`, and it is reported as the 403 it is, naming the action.

use esp_aws::firmware::Generation;
use esp_aws::sim::endpoint::Account;

use crate::sim_util::World;

#[test]
fn a_policy_denying_the_update_gets_the_403_sentence_from_shadow_set() {
    let world = World::start(Generation::V1_1_3);
    world.provision();
    let info = world.sim.endpoint().sim_info().unwrap();
    Account::open(world.sim.endpoint().state_dir())
        .unwrap()
        .set_denied_actions(&info.cert_id, &["iot:UpdateThingShadow"])
        .unwrap();
    let set = world.cli(["shadow", "set", "lnu_001", "prop1=12"]);
    assert_eq!(set.code, Some(1), "{}", set.stderr);
    assert_eq!(
        set.stderr,
        "error: AWS refused the request (403 Forbidden): the certificate is not ACTIVE or its policy lacks iot:UpdateThingShadow\n"
    );
    // Reading is still allowed (the answer is the 404 of a shadow never written, not the
    // 403), and nothing was applied.
    let get = world.cli(["shadow", "get", "lnu_001"]);
    assert_eq!(get.code, Some(3), "{}", get.stderr);
    assert_eq!(
        get.stderr,
        "error: thing 'lnu_001' has no shadow yet: create it with `esp-aws shadow set lnu_001 key=value`\n"
    );
    assert!(!get.stderr.contains("403"), "{}", get.stderr);
    assert_eq!(world.stored("lnu_001", None), None);
}
