//! Trajectories of the states through the steps (in progress).
