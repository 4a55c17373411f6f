//! Every fault knob, exercised.
