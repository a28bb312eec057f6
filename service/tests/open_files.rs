//! Every service raises its soft open-file limit to the hard limit at start (natter-service's `main` calls
//! `raise_open_file_limit`): a stock machine's soft limit of 1024 would refuse connections long before the
//! machine could serve them.

use rlimit::Resource;

#[test]
fn a_soft_limit_below_the_hard_one_is_raised_to_it() {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).expect("limits");
    let low = hard.min(1024);
    rlimit::setrlimit(Resource::NOFILE, low, hard).expect("lower the soft limit, as a stock machine has it");
    assert_eq!(natter_service::raise_open_file_limit(), Some(hard));
    assert_eq!(rlimit::getrlimit(Resource::NOFILE).expect("limits"), (hard, hard));
}
