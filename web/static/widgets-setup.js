// Runs after RequireJS and before the ipywidgets embed manager (nb_ipywidgets_js in _config.yml).
(function () {
  // 1. The manager loads its icon fonts from the folder RequireJS resolves its module name to: by
  //    default relative to the page (notebooks/@jupyter-widgets/html-manager/dist/, which does not
  //    exist). Point that name at _static/html-manager/, found from this script's own address, so
  //    the book works from any folder or host, offline.
  var here = document.currentScript.src;
  var staticDir = here.slice(0, here.lastIndexOf("/") + 1);
  window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + "html-manager" } });

  // 2. html-manager 1.0.6 typesets widget labels with MathJax 2's API, MathJax.Hub.Queue, which
  //    MathJax 3 lacks ("Cannot read properties of undefined (reading 'Queue')"). Map it onto
  //    MathJax 3's typesetPromise. MathJax (a deferred script) has replaced window.MathJax by
  //    DOMContentLoaded, which fires before the manager renders its widgets.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || !mathjax.startup || mathjax.Hub) return;
    mathjax.Hub = {
      Queue: function (job) {  // job = ["Typeset", MathJax.Hub, element]
        mathjax.startup.promise = mathjax.startup.promise.then(function () {
          return mathjax.typesetPromise([job[2]]);
        });
      },
    };
  });

  // 3. ipywidgets 8 draws a slider with noUiSlider: its handle is a <div role="slider">, and the
  //    widget's description is a <label> beside it that names nothing (a <label> can only name a
  //    form element), so screen readers announce an unnamed slider. Name each handle by its
  //    widget's label (aria-labelledby), as the manager renders the saved widgets.
  var labelled = 0;
  function nameSliders(root) {
    root.querySelectorAll(".widget-slider [role=slider]:not([aria-labelledby])").forEach(function (handle) {
      var label = handle.closest(".widget-slider").querySelector(".widget-label");
      if (!label || !label.textContent.trim()) return;
      label.id = label.id || "widget-label-" + ++labelled;
      handle.setAttribute("aria-labelledby", label.id);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    nameSliders(document);
    new MutationObserver(function () { nameSliders(document); })
      .observe(document.body, { childList: true, subtree: true });
  });
})();
