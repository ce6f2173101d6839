//! The audit streams the registry a page of users at a time (issue 14, item 9): across page
//! boundaries it sees every row, counts what the whole tables hold, and reads one user's rows
//! as the tables do.

use treecast::keytree::Scheme;
use treecast::license::Registry;
use treecast::license::registry::audit_report;

#[test]
fn the_streamed_audit_sees_every_row_across_pages() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let content = w.publish(100);
    // Three pages of users (a page is 512); users with moves on both sides of each boundary.
    let users: Vec<_> = (0..1030).map(|_| w.user()).collect();
    for &i in &[0usize, 510, 511, 512, 513, 1023, 1024, 1029] {
        let user = users[i];
        let mut a = w.client(user, 1);
        let mut b = w.client(user, 2);
        w.buy(&mut a, content);
        w.move_content(&mut a, &mut b, content).unwrap();
    }
    let r = w.distributor.registry();
    let report = audit_report(r, 10).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let c = report.counts;
    assert_eq!(c.users, r.users().unwrap().len() as u64);
    assert_eq!(c.users, 1030);
    assert_eq!(c.clients, r.all_clients().unwrap().len() as u64);
    assert_eq!(c.licenses, r.all_licenses().unwrap().len() as u64);
    assert_eq!(c.certificates, r.certificate_history().unwrap().len() as u64);
    assert_eq!(c.ledger_entries, r.ledger().unwrap().len() as u64);
    let billed: u64 = r.ledger().unwrap().iter().map(|e| e.amount).sum();
    assert_eq!(c.billed, billed);
    assert_eq!((c.clients, c.licenses, c.certificates), (16, 16, 8));
    assert_eq!(c.cross_user_certificates, 0);

    // One user's rows are the tables' rows of that user.
    let user = users[512];
    let rows = r.user_rows(user).unwrap().unwrap();
    let of = |l: &treecast::license::registry::LicenseRecord| l.user == user;
    let licenses: Vec<_> = r.all_licenses().unwrap().into_iter().filter(of).collect();
    assert_eq!(rows.licenses, licenses);
    assert_eq!(rows.clients.len(), 2);
    assert_eq!(rows.history.len(), 1);
    assert_eq!(rows.ledger.len(), 2);
    assert_eq!(rows.total, Some(r.user_total(user).unwrap()));
    assert!(r.user_rows(treecast::license::UserId(1 << 40)).unwrap().is_none());

    // The leaves come in leaf order, every client once.
    let mut leaves = Vec::new();
    r.scan_leaves(&mut |leaf, id| {
        leaves.push((leaf.get(), id));
        Ok(())
    })
    .unwrap();
    assert_eq!(leaves.len(), 16);
    assert!(leaves.windows(2).all(|p| p[0].0 < p[1].0));
}
