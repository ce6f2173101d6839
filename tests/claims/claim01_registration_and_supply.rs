//! Claim 1: registration, customer-information management, content supply, license supply and
//! copy-certificate supply, for both tree schemes.

use treecast::keytree::Scheme;


#[test]
fn the_whole_flow_on_both_schemes() {
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        let Some(mut w) = super::world(scheme) else {
        return;
    };
        let alice = w.user();
        let mut phone = w.client(alice, 1);
        let mut laptop = w.client(alice, 2);
        let movie = w.publish(200_000);
        w.buy(&mut phone, movie);
        w.play(&phone, movie).unwrap();
        assert!(matches!(
            laptop.play(movie, Vec::new()),
            Err(treecast::license::Error::NoLicense(_))
        ));

        w.move_content(&mut phone, &mut laptop, movie).unwrap();
        w.play(&laptop, movie).unwrap();
        assert!(!phone.holds(movie));
        assert!(phone.play(movie, Vec::new()).is_err());
    }
}
