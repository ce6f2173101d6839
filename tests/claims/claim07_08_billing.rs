//! Claims 7 and 8: billing on license supply and on certificate supply, at different amounts.

use treecast::keytree::Scheme;
use treecast::license::{ChargeKind, Registry, Tariff};

use crate::support::{CERTIFICATE_PRICE, LICENSE_PRICE};

#[test]
fn licenses_and_certificates_are_billed_differently() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let (alice, bob) = (w.user(), w.user());
    let mut a1 = w.client(alice, 1);
    let mut a2 = w.client(alice, 2);
    let mut b1 = w.client(bob, 1);
    let (x, y) = (w.publish(1000), w.publish(1000));
    w.buy(&mut a1, x);
    w.buy(&mut a1, y);
    w.buy(&mut b1, x);
    w.move_content(&mut a1, &mut a2, x).unwrap();
    w.move_content(&mut a2, &mut a1, x).unwrap();

    let r = w.distributor.registry();
    let ledger = r.ledger().unwrap();
    let count = |kind| ledger.iter().filter(|e| e.kind == kind).count() as u64;
    assert_eq!(
        (count(ChargeKind::License), count(ChargeKind::Certificate)),
        (3, 2)
    );
    assert!(ledger.iter().all(|e| e.amount
        == match e.kind {
            ChargeKind::License => LICENSE_PRICE,
            _ => CERTIFICATE_PRICE,
        }));
    assert_ne!(LICENSE_PRICE, CERTIFICATE_PRICE);
    assert_eq!(
        r.user_total(alice).unwrap(),
        2 * LICENSE_PRICE + 2 * CERTIFICATE_PRICE
    );
    assert_eq!(r.user_total(bob).unwrap(), LICENSE_PRICE);
    let total: u64 = ledger.iter().map(|e| e.amount).sum();
    assert_eq!(total, 3 * LICENSE_PRICE + 2 * CERTIFICATE_PRICE);
}

#[test]
fn per_content_prices_override_the_defaults() {
    let tariff = Tariff::new(10, 3).with_content_prices(treecast::license::ContentId(5), 900, 50);
    assert_eq!(
        tariff.price(ChargeKind::License, treecast::license::ContentId(5)),
        900
    );
    assert_eq!(
        tariff.price(ChargeKind::Certificate, treecast::license::ContentId(5)),
        50
    );
    assert_eq!(
        tariff.price(ChargeKind::License, treecast::license::ContentId(6)),
        10
    );
    assert_eq!(
        tariff.price(ChargeKind::Certificate, treecast::license::ContentId(6)),
        3
    );
}
