
(function(){
  function val(td){if(!td)return '';var v=td.getAttribute('data-v');var t=v!==null?v:td.textContent.replace(/,/g,'');
    var f=parseFloat(t);return isNaN(f)||!/^-?[0-9.]+$/.test(t.trim())?td.textContent.toLowerCase():f;}
  document.querySelectorAll('table.sortable th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var tb=th.closest('table').tBodies[0];var rows=Array.prototype.slice.call(tb.rows).filter(function(r){return !r.classList.contains('total');});
      var asc=th.getAttribute('data-asc')!=='1';th.setAttribute('data-asc',asc?'1':'0');
      rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);return (x>y?1:x<y?-1:0)*(asc?1:-1);});
      var tot=tb.querySelector('tr.total');rows.forEach(function(r){tb.insertBefore(r,tot);});
    });
  });
})();
