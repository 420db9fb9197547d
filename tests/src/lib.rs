//! Guest-side test programs.
